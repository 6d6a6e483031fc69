"""`nearmiss review` in a real browser: headless Chromium opens the page served on 127.0.0.1, plays an
incident's clip, judges it with a click and then a key, and the verdicts land in the catalog (the second
superseding the first) and become a label; a verdict while another process writes waits and lands."""
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from catalog import Catalog
from steps.score import run_score
from steps.train import TrainConfig, run_train
from models.train_spec import TrainSpec
from nearmiss.review import ReviewConfig, build_app

from cdp import CHROMIUM, Browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def review_server(featurized, tmp_path_factory):
    """A copy of the featurized catalog with detection incidents, served once for this module's tests."""
    import os
    import shutil

    import uvicorn

    root = tmp_path_factory.mktemp("review")
    db = str(root / "catalog.duckdb")
    shutil.copy(featurized, db)
    store = os.environ.get("NEARMISS_MODEL_STORE")
    os.environ["NEARMISS_MODEL_STORE"] = str(root / "store")
    try:
        run_train(db, TrainConfig("detection", spec=TrainSpec(epochs=4)), log=None)
        run_score(db, ["detection"])
        with Catalog(db).read() as con:
            assert con.execute("SELECT count(*) FROM latest_incidents").fetchone()[0] > 0
        port = _free_port()
        app = build_app(ReviewConfig(db, str(root / "review"), head="detection", limit=5, reviewer="tester",
                                     port=port))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        yield db, f"http://127.0.0.1:{port}"
        server.should_exit = True
        thread.join(timeout=10)
    finally:
        if store is None:
            os.environ.pop("NEARMISS_MODEL_STORE", None)
        else:
            os.environ["NEARMISS_MODEL_STORE"] = store


def _latest(db, clip_id):
    """For one clip: how many verdicts, the latest per incident, and its review label."""
    with Catalog(db).read() as con:
        reviews = con.execute("SELECT count(*) FROM reviews WHERE clip_id = ?", [clip_id]).fetchone()[0]
        latest = con.execute("SELECT clip_id, verdict, class, reviewer FROM latest_reviews WHERE clip_id = ?",
                             [clip_id]).fetchall()
        labels = con.execute("SELECT clip_id, class, event_start_s, source FROM labels WHERE source = 'review'"
                             " AND clip_id = ?", [clip_id]).fetchall()
    return reviews, latest, labels


def test_a_reviewer_plays_the_clip_and_judges_in_chromium(review_server, tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: scripts/test.sh installs Debian's chromium package")
    db, url = review_server
    browser = Browser()
    try:
        browser.open(url)
        assert browser.eval("document.querySelectorAll('.card').length") >= 1
        browser.wait_for("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        # the clip plays, from just before the incident's peak
        state = browser.eval("""(async () => {
            const v = document.querySelector('.card video');
            if (v.readyState < 1) await new Promise(r => v.addEventListener('loadedmetadata', r, {once: true}));
            await new Promise(r => setTimeout(r, 300));
            const start = v.currentTime; v.muted = true; await v.play();
            await new Promise(r => setTimeout(r, 1200));
            return {start, now: v.currentTime, peak: Number(v.dataset.peak), error: v.error && v.error.code};
        })()""")
        assert state["error"] is None and state["now"] > state["start"]
        assert state["start"] == pytest.approx(max(0.0, state["peak"] - 2), abs=0.3)
        clip_id = browser.eval("document.querySelector('.card').dataset.clip")
        browser.eval("document.querySelector('.card button[data-verdict=\"not\"]').click()")
        browser.wait_for("document.querySelector('.card .verdict').textContent.startsWith('verdict: not')")
        reviews, latest, labels = _latest(db, clip_id)
        assert reviews == 1 and latest == [(clip_id, "not", None, "tester")]
        total = browser.eval("document.querySelectorAll('.card').length")
        assert browser.eval("document.getElementById('progress').textContent") == f"1 of {total} reviewed"
        # a second verdict on the same incident, by keyboard: pick vehicle (3), then real (R)
        browser.key("3")
        browser.key("r")
        browser.wait_for("document.querySelector('.card .verdict').textContent.startsWith('verdict: real')")
        reviews, latest, labels = _latest(db, clip_id)
        assert reviews == 2 and latest == [(clip_id, "real", "vehicle", "tester")]
        assert [(c, k) for c, k, _, _ in labels] == [(clip_id, "vehicle")]
        browser.screenshot(tmp_path / "review.png")
        assert (tmp_path / "review.png").stat().st_size > 10_000
        # opened again: the progress is kept, the reviewed incident goes last (unreviewed first), or first by score
        browser.open(url)
        assert browser.eval("document.getElementById('progress').textContent") == f"1 of {total} reviewed"
        order = browser.eval("[...document.querySelectorAll('.card')].map(c => c.dataset.verdict)")
        assert order[-1] == "real" and not any(order[:-1])
        browser.open(url + "?order=score")
        assert browser.eval("document.querySelector('.card').dataset.clip") == clip_id
    finally:
        browser.close()


def test_a_verdict_while_another_process_writes_waits_and_lands(review_server):
    db, url = review_server
    with Catalog(db).read() as con:
        clip_id, name, version, idx = con.execute(
            "SELECT clip_id, model_name, model_version, event_idx FROM latest_incidents ORDER BY score LIMIT 1"
        ).fetchone()   # the lowest-scored: not the incident the browser test judges
    # a writer (as a flow's transaction) holds the catalog for 3 s
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]);"
                               " print('held', flush=True); time.sleep(3); c.close()", db],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/verdict", json={"clip_id": clip_id, "model_name": name, "model_version": version,
                                           "event_idx": idx, "verdict": "unsure"}, timeout=60)
    waited = time.perf_counter() - t0
    holder.wait(timeout=30)
    assert r.status_code == 200 and r.json()["verdict"] == "unsure"
    assert waited > 1.5
    with Catalog(db).read() as con:
        assert con.execute("SELECT verdict, reviewer FROM latest_reviews WHERE clip_id = ? AND model_name = ?"
                           " AND model_version = ? AND event_idx = ?", [clip_id, name, version, idx]
                           ).fetchall() == [("unsure", "tester")]


def test_bad_verdicts_and_unknown_clips_are_refused(review_server):
    db, url = review_server
    assert httpx.post(f"{url}/verdict", json={"clip_id": "x", "model_name": "detection", "model_version": 1,
                                              "event_idx": 0, "verdict": "maybe"}).status_code == 400
    assert httpx.post(f"{url}/verdict", json={"clip_id": "x", "model_name": "detection", "model_version": 1,
                                              "event_idx": 0, "verdict": "not"}).status_code == 404
    assert httpx.get(f"{url}/clip/not-a-clip").status_code == 404
    assert httpx.get(f"{url}/img/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert _latest(db, "x")[0] == 0
