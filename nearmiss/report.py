"""`nearmiss report`: a static HTML page a reviewer opens in a browser.

Top incidents, each with frames around the peak (foreground motion overlaid),
the near-miss score over time with the event shaded, class probabilities and
where to find the clip; then every clip with its state and highest score (sortable,
filterable), and the evaluation of each head (with a confusion matrix) when the
catalog has one. Images are files beside index.html, so the
folder can be zipped, served or opened straight from disk.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import jinja2
import numpy as np

from catalog import Catalog
from catalog.readonly import check_predicate
from catalog.report_data import (ReportIncident, TrackView, alarm_level, clip_states, critical_track,
                                 heads_with_incidents, latest_evaluations, missed_events, motion_near, top_incidents)
from models.head_registry import default_report_head, head_info
from pipeline.decode import DecodeError, DecodeSpec, make_decoder
from nearmiss.plots import score_plot_svg
from pipeline.overlay import draw_box, encode_png, frame_strip, overlay_motion

STRIP_OFFSETS_S = (-1.0, -0.5, 0.0, 0.5, 1.0)


@dataclass
class Card:
    incident: ReportIncident
    strip: str | None
    plot: str
    error: str | None = None
    verdict: dict | None = None    # the review page: the latest verdict on it
    play: str = ""                 # the clip's file, seeking to the peak


def confusion_svg(classes: list[str], cm: list[list[int]], cell: int = 56) -> str:
    n = len(classes)
    left, top = 100, 90   # room for the rotated column headers
    w, h = left + n * cell + 10, top + n * cell + 10
    peak = max(1, max(max(r) for r in cm))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">',
             f'<text x="{left}" y="14" font-size="11">predicted &#8594;</text>']
    for j, c in enumerate(classes):
        parts.append(f'<text x="{left + j * cell + cell / 2}" y="{top - 8}" font-size="10" text-anchor="end" '
                     f'transform="rotate(-35 {left + j * cell + cell / 2} {top - 8})">{escape(c)}</text>')
    for i, c in enumerate(classes):
        parts.append(f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4}" font-size="10" '
                     f'text-anchor="end">{escape(c)}</text>')
        for j in range(n):
            v = cm[i][j]
            shade = int(255 - 200 * v / peak)
            parts.append(f'<rect x="{left + j * cell}" y="{top + i * cell}" width="{cell}" height="{cell}" '
                         f'fill="rgb({shade},{shade},255)" stroke="#fff"/>'
                         f'<text x="{left + j * cell + cell / 2}" y="{top + i * cell + cell / 2 + 4}" '
                         f'font-size="12" text-anchor="middle">{v}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _strip(inc: ReportIncident, frames, times, grids, track: TrackView | None) -> np.ndarray:
    picks, labels, used = [], [], set()
    for n, off in enumerate(STRIP_OFFSETS_S):
        k = int(np.argmin(np.abs(times - (inc.peak_s + off))))
        if k in used:        # near the clip's start or end two offsets land on one frame: show it once
            continue
        used.add(k)
        frame = overlay_motion(frames[k], grids[n])
        if track is not None:
            j = int(np.argmin(np.abs(track.t_s - times[k])))
            if abs(track.t_s[j] - times[k]) <= 0.2:
                frame = draw_box(frame, track.boxes[j], f"{track.cls} TTC {track.ttc_s[j]:.1f}s"
                                 if np.isfinite(track.ttc_s[j]) else track.cls)
        picks.append(frame)
        labels.append(f"{times[k] - inc.peak_s:+.1f}s")
    return frame_strip(picks, labels)


PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nearmiss incident report</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
.card{border:1px solid #ddd;border-radius:8px;padding:12px 16px;margin:16px 0}
.meta{color:#555;font-size:14px} .strip{max-width:100%;border-radius:4px;margin:8px 0}
.bar{display:inline-block;height:10px;background:#457b9d;vertical-align:middle}
table{border-collapse:collapse} td,th{padding:2px 10px;text-align:left;font-size:14px}
.err{color:#b00} .fa{color:#b00;font-weight:600;margin:4px 0}
</style></head><body>
<h1>Near-miss incidents</h1>
<p class="meta">Catalog {{ db }} &middot; {{ cards|length }} incident(s){% if head %} from {{ head }}{% endif %}
{% if where %} &middot; filter <code>{{ where }}</code>{% endif %}</p>
{% if level and not level.calibrated %}<p class="err banner" id="uncalibrated"><b>The alarm level ({{ '%.2f'|format(level.threshold) }}) is
uncalibrated:</b> no labelled normal driving set it ({{ level.method }}), so how often it alarms on your footage is
unknown. Ingest normal driving with a labels sidecar (<code>path,class</code> rows with class <code>background</code>)
and run <code>nearmiss train --head {{ head.split('@')[0] }}</code>, or mark incidents "not" on the review page.</p>{% endif %}
{% if untrained %}<p class="err"><b>These scores come from a head that reads CLIP embeddings of an untrained
feature set (random CLIP weights): the ranking means nothing on real footage.</b> Featurize with real CLIP weights
(<code>--pretrained</code>), or with a detector (<code>--detector</code>) and read the <code>ttc</code> head.</p>{% endif %}
{% if not cards %}<p>No incidents: featurize with a detector (<code>nearmiss featurize --detector darknet:DIR</code>)
and score (<code>nearmiss score</code>; the ttc head needs no training), or train a head on labelled clips.</p>{% endif %}
{% for c in cards %}{% set i = c.incident %}
<div class="card" id="incident-{{ loop.index }}">
<h2>#{{ loop.index }} {{ i.cls }} &middot; score {{ '%.2f'|format(i.score) }}</h2>
{% if i.label == 'background' %}<p class="fa">False alarm: this clip is labelled normal driving.</p>{% endif %}
<p class="meta"><code>{{ i.path }}</code> &middot; {{ '%.2f'|format(i.start_s) }}&ndash;{{ '%.2f'|format(i.end_s) }} s,
peak {{ '%.2f'|format(i.peak_s) }} s &middot; {{ i.model }}{% if i.label %} &middot; labelled <b>{{ i.label }}</b>{% endif %}
{% if i.party_names %} &middot; <span class="parties">{{ i.party_names|join(', ') }}</span>{% endif %}{% if i.why %}<br><span class="why">why: {{ i.why }}</span>{% endif %}
&middot; <a class="play" href="{{ c.play }}">play from the peak ({{ '%.1f'|format(i.peak_s) }} s)</a></p>
{% if c.strip %}<img class="strip" src="{{ c.strip }}" alt="frames around the peak with foreground motion">
{% else %}<p class="err">frames unavailable: {{ c.error }}</p>{% endif %}
<div><img src="{{ c.plot }}" alt="near-miss score over time, labelled event and time-to-collision"></div>
<p class="meta">Frames: the peak and &plusmn;0.5 s, &plusmn;1 s (each shown once); red-to-yellow tint:
foreground motion, things moving against the scene; cyan box: the road user the head names, with its
time-to-collision. Plot: red the near-miss score (shaded: the incident; dotted line the alarm level in force); green band the
labelled event; blue dashes the road user's time-to-collision (0 to 5 s).</p>
<table>{% for k, v in i.probs.items() %}<tr><td>{{ k }}</td><td>{{ '%.2f'|format(v) }}</td>
<td><span class="bar" style="width:{{ (v * 200)|round|int }}px"></span></td></tr>{% endfor %}</table>
</div>{% endfor %}
{% if missed %}<h1>Missed: labelled near-misses with no incident ({{ missed|length }})</h1>
<table><tr><th>clip</th><th>labelled</th><th>event</th><th>head's top score</th><th>predicted</th></tr>
{% for m in missed %}<tr class="missed"><td><code>{{ m.path }}</code></td><td>{{ m.cls }}</td>
<td>{% if m.event_start_s is not none %}{{ '%.1f'|format(m.event_start_s) }}&ndash;{{ '%.1f'|format(m.event_end_s) }} s{% endif %}</td>
<td>{{ '%.2f'|format(m.score) }}</td><td>{{ m.predicted }}</td></tr>{% endfor %}</table>{% endif %}
{% if clips %}<h1 id="clips">Every clip ({{ clips|length }})</h1>
<p class="meta">Each clip with {{ head }}'s highest score on it, its alarms and its state: scored, failed (with the
reason) or not featurized. Click a column to sort; filter by class, score and review state.</p>
<p class="meta" id="filters">class <select id="f-class"><option value="">any</option>{% for k in classes %}<option>{{ k }}</option>{% endfor %}</select>
&middot; score at least <input id="f-score" type="number" min="0" max="1" step="0.05" value="0" style="width:5em">
&middot; state <select id="f-state"><option value="">any</option>{% for k in states %}<option>{{ k }}</option>{% endfor %}</select>
&middot; review <select id="f-review"><option value="">any</option><option value="unreviewed">alarms not all reviewed</option><option value="reviewed">all alarms reviewed</option><option value="none">no alarms</option></select>
&middot; <span id="shown">{{ clips|length }}</span> shown</p>
<table id="clip-list"><thead><tr><th data-key="path">clip</th><th data-key="state">state</th><th data-key="score" data-num="1">highest score</th>
<th data-key="predicted">predicted</th><th data-key="alarms" data-num="1">alarms</th><th data-key="reviewed" data-num="1">reviewed</th><th data-key="label">labelled</th></tr></thead>
<tbody>{% for c in clips %}<tr data-path="{{ c.path }}" data-state="{{ c.state }}" data-score="{{ c.score if c.score is not none else -1 }}"
data-predicted="{{ c.predicted or '' }}" data-alarms="{{ c.alarms }}" data-reviewed="{{ c.reviewed }}" data-label="{{ c.label or '' }}">
<td><code>{{ c.path }}</code></td><td>{{ c.state }}{% if c.reason %}: <span class="err">{{ c.reason }}</span>{% endif %}</td>
<td>{{ '%.2f'|format(c.score) if c.score is not none else '' }}</td><td>{{ c.predicted or '' }}</td><td>{{ c.alarms }}</td>
<td>{{ c.reviewed }} of {{ c.alarms }}</td><td>{{ c.label or '' }}</td></tr>{% endfor %}</tbody></table>{% endif %}
{% if evaluations %}<h1>Evaluation</h1>{% for e in evaluations %}
<div class="card"><h2>{{ e.ref }} on the {{ e.split }} split ({{ e.clips }} clips)</h2>
<table>{% for k, v in e.line.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
<img src="{{ e.image }}" alt="confusion matrix"></div>{% endfor %}{% endif %}
<script>
// The clip list: sort by a column, filter by class, score, state and review state.
(() => {
  const table = document.getElementById("clip-list");
  if (!table) return;
  const body = table.tBodies[0], rows = [...body.rows];
  const val = (id) => document.getElementById(id).value;
  function filter() {
    const cls = val("f-class"), min = Number(val("f-score")) || 0, state = val("f-state"), review = val("f-review");
    let shown = 0;
    for (const r of rows) {
      const d = r.dataset, alarms = Number(d.alarms), reviewed = Number(d.reviewed);
      const ok = (!cls || d.predicted === cls) && Number(d.score) >= min && (!state || d.state === state)
        && (!review || (review === "none" ? alarms === 0 : review === "reviewed" ? alarms > 0 && reviewed >= alarms
                                                                               : reviewed < alarms));
      r.hidden = !ok; shown += ok;
    }
    document.getElementById("shown").textContent = shown;
  }
  for (const id of ["f-class", "f-score", "f-state", "f-review"]) document.getElementById(id).addEventListener("input", filter);
  for (const th of table.tHead.rows[0].cells) th.addEventListener("click", () => {
    const key = th.dataset.key, num = th.dataset.num, dir = th.dataset.dir === "asc" ? -1 : 1;
    th.dataset.dir = dir === 1 ? "asc" : "desc";
    rows.sort((a, b) => dir * (num ? Number(a.dataset[key]) - Number(b.dataset[key])
                                   : a.dataset[key].localeCompare(b.dataset[key])));
    for (const r of rows) body.appendChild(r);
  });
})();
// For reviewers and for the browser test: count images that failed to load.
window.addEventListener("load", () => {
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
});
</script>
</body></html>""", autoescape=True)


def incident_cards(catalog: Catalog, incidents: list[ReportIncident], out_dir: Path,
                   threshold: float = 0.5) -> list[Card]:
    """Per incident, its score plot and frame strip as files under out_dir/img (what the static report and the
    review page show)."""
    (out_dir / "img").mkdir(parents=True, exist_ok=True)
    decoder = make_decoder("pyav")
    cards = []
    for n, inc in enumerate(incidents, start=1):
        duration = float(inc.step_t_s[-1]) if len(inc.step_t_s) else inc.end_s
        with catalog.read() as con:
            track = critical_track(con, inc.clip_id, inc.feature_set_id, inc.peak_s, parties=inc.parties)
        plot = f"img/score_{n}.svg"
        (out_dir / plot).write_text(score_plot_svg(
            inc.step_t_s, inc.step_scores, inc.start_s, inc.end_s, inc.peak_s, duration,
            label=(inc.label_start_s, inc.label_end_s), ttc=(track.t_s, track.ttc_s) if track else None,
            threshold=threshold))
        card = Card(inc, None, plot, play=Path(inc.path).resolve().as_uri() + f"#t={max(inc.peak_s, 0):.1f}")
        try:
            if not Path(inc.path).exists():
                raise DecodeError("the file is no longer at this path")
            s = decoder.decode(inc.path, DecodeSpec(sample_fps=4.0, height=180))
            want = [inc.peak_s + o for o in STRIP_OFFSETS_S]
            with catalog.read() as con:
                grids = motion_near(con, inc.clip_id, inc.feature_set_id, want)
            strip = f"img/strip_{n}.png"
            (out_dir / strip).write_bytes(encode_png(_strip(inc, s.frames, s.times_s, grids, track)))
            card.strip = strip
        except DecodeError as exc:
            card.error = str(exc)
        cards.append(card)
    return cards


def build_report(db: str, out: str, where: str | None = None, head: str | None = None, limit: int = 20) -> Path:
    from models.evaluation import METRIC_NAMES, PROPORTIONS, summary_line, wilson_interval

    out_dir = Path(out)
    (out_dir / "img").mkdir(parents=True, exist_ok=True)
    catalog = Catalog(db)
    if where:
        check_predicate(where)
    with catalog.read(sandboxed=bool(where)) as con:  # --where can neither write nor read other files
        incidents = top_incidents(con, head or default_report_head(heads_with_incidents(con)), where, limit)
        level = alarm_level(con, incidents[0].model) if incidents else None
        evaluations = latest_evaluations(con)
        missed = missed_events(con, incidents[0].model) if incidents else []
        clip_list = clip_states(con, incidents[0].model) if incidents else []
    cards = incident_cards(catalog, incidents, out_dir, level.threshold if level else 0.5)
    evals = []
    for k, (ref, split, clips, metrics) in enumerate(evaluations, start=1):
        image = f"img/confusion_{k}.svg"
        cm = metrics["confusion_matrix"]
        (out_dir / image).write_text(confusion_svg(cm["classes"], cm["rows_true_cols_predicted"]))
        line = {}
        for key, v in summary_line(metrics).items():
            text = "n/a" if v is None else f"{v:.3f}"
            if v is not None and key in PROPORTIONS:
                lo, hi = wilson_interval(v, clips)
                text += f" (95% {lo:.2f}-{hi:.2f}, {clips} clips)"
            line[METRIC_NAMES.get(key, key)] = text
        evals.append({"ref": ref, "split": split, "clips": clips, "line": line, "image": image})
    page = out_dir / "index.html"
    untrained = bool(incidents) and incidents[0].untrained_features and \
        "embeddings" in head_info(incidents[0].model.split("@")[0]).needs
    page.write_text(PAGE.render(db=db, cards=cards, evaluations=evals, where=where, missed=missed,
                                head=incidents[0].model if incidents else None, untrained=untrained, level=level,
                                clips=clip_list, classes=sorted({c.predicted for c in clip_list if c.predicted}),
                                states=sorted({c.state for c in clip_list})))
    return page
