"""`nearmiss review`: the report as a local web app where reviewers judge incidents.

A real HTTP server (Starlette, which Prefect already brings, under uvicorn) on 127.0.0.1. The page says how
many incidents are reviewed of how many, and shows the unreviewed ones first (`?order=score`: by score). Per incident:
the clip playing from just before the peak (HTML5 video; the server answers range requests, so it
seeks), the frames around the peak, the score and TTC plot, and three verdicts (real near-miss / not /
unsure) with the other party's class. Keyboard: R, N, U judge the incident in view; 1, 2, 3 pick
bicycle, pedestrian, vehicle; J and K move between incidents; space plays or pauses.

Each verdict is one short write transaction (catalog/reviews.py: the `reviews` row and the clip's review
label together), under the catalog's lock rules: while a flow writes, it waits and then lands. The
server never holds the catalog open between requests, and serves only clips the catalog knows.
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

import jinja2

from catalog import Catalog
from catalog.report_data import alarm_level, heads_with_incidents, top_incidents
from catalog.reviews import Verdict, latest_verdicts, record_verdict
from contracts.taxonomy import CLASSES
from models.head_registry import default_report_head


@dataclass(frozen=True)
class ReviewConfig:
    db: str
    out: str = "review"               # where the frame strips and plots are written
    head: str | None = None           # default: as the report (conflict, then ttc, ...)
    limit: int = 50
    reviewer: str = ""                # default: the login name
    host: str = "127.0.0.1"
    port: int = 8765


PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nearmiss review</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
.card{border:2px solid #ddd;border-radius:8px;padding:12px 16px;margin:16px 0}
.card.current{border-color:#1d4ed8}
.meta{color:#444;font-size:14px} .strip{max-width:100%;border-radius:4px;margin:8px 0}
video{max-width:640px;width:100%;background:#000;border-radius:4px}
button{font-size:15px;padding:6px 12px;margin:4px 6px 4px 0;border-radius:6px;border:1px solid #888;background:#f6f6f6}
button.chosen{background:#1d4ed8;color:#fff;border-color:#1d4ed8}
.verdict{font-weight:600} kbd{border:1px solid #999;border-radius:3px;padding:0 4px;font-size:12px}
.legend{font-size:13px;color:#444}
</style></head><body>
<h1>Review near-miss incidents</h1>
<p class="meta">Catalog <code>{{ db }}</code> &middot; {{ cards|length }} incident(s){% if head %} from {{ head }}{% endif %}
&middot; reviewer <b id="reviewer">{{ reviewer }}</b></p>
<p class="meta"><b id="progress" data-total="{{ cards|length }}">{{ reviewed }} of {{ cards|length }} reviewed</b>
&middot; order: {% if order == 'unreviewed' %}<b>unreviewed first</b> (then by score) &middot; <a href="?order=score">by score</a>
{% else %}<a href="?order=unreviewed">unreviewed first</a> &middot; <b>by score</b>{% endif %}</p>
<p class="legend">Keys: <kbd>R</kbd> real near-miss, <kbd>N</kbd> not a near-miss, <kbd>U</kbd> unsure,
<kbd>1</kbd> bicycle <kbd>2</kbd> pedestrian <kbd>3</kbd> vehicle (the other party, before R),
<kbd>J</kbd>/<kbd>K</kbd> next/previous, <kbd>space</kbd> play/pause. Frames: the incident's peak and
&plusmn;0.5 s, &plusmn;1 s; tinted cells: foreground motion (things moving against the scene); the box: the
road user the head names, with its time-to-collision. Plot: red the near-miss score (shaded: the incident),
green band the labelled event, blue dashes the time-to-collision (0 to 5 s).</p>
{% if not cards %}<p>No incidents to review: featurize with a detector and score
(<code>nearmiss featurize --stages motion,objects --detector darknet:DIR</code>, <code>nearmiss score --head conflict</code>).</p>{% endif %}
{% for c in cards %}{% set i = c.incident %}
<div class="card" id="incident-{{ loop.index0 }}" data-clip="{{ i.clip_id }}" data-model="{{ i.model }}"
     data-event="{{ i.event_idx }}" data-peak="{{ '%.2f'|format(i.peak_s) }}" data-class="{{ i.cls }}"
     data-verdict="{{ c.verdict.verdict if c.verdict else '' }}">
<h2>#{{ loop.index }} {{ i.cls }} &middot; score {{ '%.2f'|format(i.score) }}
{% if i.label %}&middot; labelled {{ i.label }}{% endif %}</h2>
<p class="meta"><code>{{ i.path }}</code> &middot; {{ '%.2f'|format(i.start_s) }}&ndash;{{ '%.2f'|format(i.end_s) }} s,
peak {{ '%.2f'|format(i.peak_s) }} s &middot; {{ i.model }}{% if i.party_names %} &middot; {{ i.party_names|join(', ') }}{% endif %}{% if i.why %}<br><span class="why">why: {{ i.why }}</span>{% endif %}</p>
<video controls preload="metadata" src="/clip/{{ i.clip_id }}" data-peak="{{ '%.2f'|format(i.peak_s) }}"></video>
{% if c.strip %}<div><img class="strip" src="/{{ c.strip }}" alt="frames around the peak"></div>
{% else %}<p class="meta">frames unavailable: {{ c.error }}</p>{% endif %}
<div><img src="/{{ c.plot }}" alt="near-miss score, labelled event and time-to-collision over time"></div>
<div>
<button data-verdict="real">Real near-miss (R)</button><button data-verdict="not">Not a near-miss (N)</button>
<button data-verdict="unsure">Unsure (U)</button>
&nbsp; other party:
{% for k in party_classes %}<button data-class="{{ k }}" class="{{ 'chosen' if k == i.cls else '' }}">{{ k }} ({{ loop.index }})</button>{% endfor %}
</div>
<p class="verdict">{% set v = c.verdict %}{% if v %}verdict: {{ v.verdict }}{% if v.class %} ({{ v.class }}){% endif %}
by {{ v.reviewer }}{% else %}not reviewed yet{% endif %}</p>
</div>{% endfor %}
<script>
const cards = [...document.querySelectorAll(".card")];
let current = 0;
function focusCard(k) {
  if (!cards.length) return;
  current = Math.max(0, Math.min(cards.length - 1, k));
  cards.forEach((c, j) => c.classList.toggle("current", j === current));
  cards[current].scrollIntoView({block: "nearest"});
}
function partyOf(card) {
  const chosen = card.querySelector("button[data-class].chosen");
  return chosen ? chosen.dataset.class : null;
}
async function judge(card, verdict) {
  const [model, version] = card.dataset.model.split("@");
  const body = {clip_id: card.dataset.clip, model_name: model, model_version: Number(version),
                event_idx: Number(card.dataset.event), verdict: verdict,
                class: verdict === "real" ? partyOf(card) : null};
  const line = card.querySelector(".verdict");
  line.textContent = "saving...";
  const r = await fetch("/verdict", {method: "POST", headers: {"content-type": "application/json"},
                                     body: JSON.stringify(body)});
  const out = await r.json();
  line.textContent = r.ok ? `verdict: ${out.verdict}${out.class ? " (" + out.class + ")" : ""} by ${out.reviewer}`
                          : `not saved: ${out.error}`;
  if (r.ok) card.dataset.verdict = out.verdict;
  const done = cards.filter(c => c.dataset.verdict).length, progress = document.getElementById("progress");
  progress.textContent = `${done} of ${progress.dataset.total} reviewed`;
}
cards.forEach((card, k) => {
  const video = card.querySelector("video");
  video.addEventListener("loadedmetadata", () => {
    video.currentTime = Math.max(0, Number(video.dataset.peak) - 2);   // from just before the peak
  });
  card.addEventListener("click", () => focusCard(k));
  card.querySelectorAll("button[data-verdict]").forEach(b =>
    b.addEventListener("click", () => judge(card, b.dataset.verdict)));
  card.querySelectorAll("button[data-class]").forEach(b => b.addEventListener("click", () => {
    card.querySelectorAll("button[data-class]").forEach(o => o.classList.toggle("chosen", o === b));
  }));
});
document.addEventListener("keydown", e => {
  if (!cards.length || e.target.tagName === "INPUT") return;
  const card = cards[current], key = e.key.toLowerCase();
  const verdicts = {r: "real", n: "not", u: "unsure"};
  if (verdicts[key]) judge(card, verdicts[key]);
  else if (["1", "2", "3"].includes(key)) card.querySelectorAll("button[data-class]")[Number(key) - 1].click();
  else if (key === "j") focusCard(current + 1);
  else if (key === "k") focusCard(current - 1);
  else if (key === " ") { const v = card.querySelector("video"); v.paused ? v.play() : v.pause(); e.preventDefault(); }
});
focusCard(0);
</script>
</body></html>""", autoescape=True)


def build_app(cfg: ReviewConfig):
    """The Starlette app: the page, its images, the clips (range requests) and the verdicts."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse
    from starlette.routing import Route

    from nearmiss.report import incident_cards

    catalog = Catalog(cfg.db)
    out = Path(cfg.out)
    with catalog.read() as con:
        incidents = top_incidents(con, cfg.head or default_report_head(heads_with_incidents(con)), None, cfg.limit)
        level = alarm_level(con, incidents[0].model) if incidents else None
    cards = incident_cards(catalog, incidents, out, level.threshold if level else 0.5)
    reviewer = cfg.reviewer or getpass.getuser()
    by_clip = {i.clip_id: i.path for i in incidents}

    def page(request: Request):
        with catalog.read() as con:
            verdicts = latest_verdicts(con, [i.clip_id for i in incidents])
        for c in cards:
            name, version = c.incident.model.split("@")
            c.verdict = verdicts.get((c.incident.clip_id, name, int(version), c.incident.event_idx))
        order = "score" if request.query_params.get("order") == "score" else "unreviewed"
        # unreviewed first: a stable sort keeps the score order within each group
        shown = sorted(cards, key=lambda c: c.verdict is not None) if order == "unreviewed" else cards
        return HTMLResponse(PAGE.render(db=cfg.db, cards=shown, reviewer=reviewer, order=order,
                                        reviewed=sum(c.verdict is not None for c in cards),
                                        head=incidents[0].model if incidents else None,
                                        party_classes=[c for c in CLASSES if c != "background"]))

    def image(request: Request):
        name = request.path_params["name"]
        path = out / "img" / name
        if "/" in name or not path.is_file():
            return JSONResponse({"error": "no such image"}, status_code=404)
        return FileResponse(path)

    def clip(request: Request):
        path = by_clip.get(request.path_params["clip_id"])   # only the clips on the page: no other file is served
        if path is None or not Path(path).is_file():
            return JSONResponse({"error": "no such clip, or its file is gone"}, status_code=404)
        return FileResponse(path, media_type="video/mp4")

    async def verdict(request: Request):
        from starlette.concurrency import run_in_threadpool

        try:
            body = await request.json()
            v = Verdict(str(body["clip_id"]), str(body["model_name"]), int(body["model_version"]),
                        int(body["event_idx"]), str(body["verdict"]), body.get("class") or None,
                        str(body.get("reviewer") or reviewer))
            v.check()
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": f"bad verdict: {exc}"}, status_code=400)

        def write():
            with catalog.write() as con:      # one short transaction; waits while a flow holds the lock
                return record_verdict(con, v)
        try:
            stored = await run_in_threadpool(write)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(stored)

    def verdicts(request: Request):
        with catalog.read() as con:
            found = latest_verdicts(con)
        return JSONResponse([{"clip_id": k[0], "model": f"{k[1]}@{k[2]}", "event_idx": k[3], **v}
                             for k, v in found.items()])

    return Starlette(routes=[Route("/", page), Route("/img/{name}", image), Route("/clip/{clip_id}", clip),
                             Route("/verdict", verdict, methods=["POST"]), Route("/verdicts", verdicts)])


def serve(cfg: ReviewConfig) -> None:
    import uvicorn

    app = build_app(cfg)
    print(f"review: http://{cfg.host}:{cfg.port}/ (Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
