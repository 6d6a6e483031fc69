"""`nearmiss report` renders in a real browser (headless Chromium) with every image loaded."""
import re
import shutil
import subprocess

import pytest

from steps.score import run_score
from steps.train import TrainConfig, run_evaluate, run_train
from models.train_spec import TrainSpec
from nearmiss.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_opens_in_chromium_with_all_images(catalog_copy, tmp_path, capsys):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: scripts/test.sh installs Debian's chromium package")
    db = catalog_copy
    run_train(db, TrainConfig("detection", spec=TrainSpec(epochs=4)), log=None)
    run_score(db)
    run_evaluate(db, "detection")
    out = tmp_path / "report"
    assert main(["--db", db, "report", "--out", str(out), "--limit", "5"]) == 0
    assert str(out / "index.html") in capsys.readouterr().out
    html = (out / "index.html").read_text()
    strips = re.findall(r'src="(img/strip_\d+\.png)"', html)
    plots = re.findall(r'src="(img/score_\d+\.svg)"', html)
    assert 1 <= len(strips) == len(plots) <= 5 and 'src="img/confusion_1.svg"' in html
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", (out / "index.html").as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    images = int(re.search(r'data-images="(\d+)"', body.group(0)).group(1))
    broken = int(re.search(r'data-broken="(\d+)"', body.group(0)).group(1))
    assert images == len(strips) + len(plots) + 1 and broken == 0


def test_report_of_an_empty_catalog_says_what_to_do(db, tmp_path):
    from catalog import Catalog
    Catalog(db).ensure()
    assert main(["--db", db, "report", "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    assert "No incidents" in page and "--detector" in page and "nearmiss score" in page


def test_every_clip_is_listed_with_its_state_and_sorts_and_filters_in_chromium(catalog_copy, tmp_path):
    """Clean clips, failed ones (with the reason) and incidents' clips alike; the list sorts by a column and filters
    by score and state in the browser; the plot is matplotlib's, with axes and the alarm level in force."""
    from catalog import Catalog
    from cdp import Browser
    from steps.ingest import run_ingest

    if CHROMIUM is None:
        pytest.fail("chromium is not installed: scripts/test.sh installs Debian's chromium package")
    db = catalog_copy
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    run_ingest([str(broken)], db=db)
    run_train(db, TrainConfig("detection", spec=TrainSpec(epochs=4)), log=None)
    run_score(db)
    out = tmp_path / "report"
    assert main(["--db", db, "report", "--head", "detection", "--out", str(out), "--limit", "3"]) == 0
    with Catalog(db).read() as con:
        current = con.execute("SELECT count(*) FROM current_clips").fetchone()[0]
    plot = (out / "img" / "score_1.svg").read_text()
    assert "time in the clip (s)" in plot and "near-miss score" in plot and "alarm level" in plot
    browser = Browser()
    try:
        browser.open((out / "index.html").as_uri())
        rows = browser.eval("[...document.querySelectorAll('#clip-list tbody tr')].map(r => ({...r.dataset}))")
        assert len(rows) == current
        failed = [r for r in rows if r["state"] == "failed"]
        assert [r["path"] for r in failed] == [str(broken)]
        assert "ingest:" in browser.eval("document.querySelector('#clip-list tr[data-state=failed]').textContent")
        scores = [float(r["score"]) for r in rows if r["state"] == "scored"]
        assert len(scores) == current - 1 and scores == sorted(scores, reverse=True)
        # sort by score, ascending, with a click on its header
        browser.eval("document.querySelector('#clip-list th[data-key=score]').click()")
        first = browser.eval("document.querySelector('#clip-list tbody tr').dataset.score")
        assert float(first) == min(float(r["score"]) for r in rows)
        # filter: a score threshold, then the failed state
        cut = sorted(scores)[len(scores) // 2]
        browser.eval(f"const f = document.getElementById('f-score'); f.value = '{cut}';"
                     " f.dispatchEvent(new Event('input'))")
        shown = int(browser.eval("document.getElementById('shown').textContent"))
        assert shown == sum(s >= cut for s in scores) < current
        browser.eval("document.getElementById('f-score').value = '-1';"
                     "const s = document.getElementById('f-state'); s.value = 'failed';"
                     " s.dispatchEvent(new Event('input'))")
        assert browser.eval("[...document.querySelectorAll('#clip-list tbody tr')].filter(r => !r.hidden)"
                            ".map(r => r.dataset.path)") == [str(broken)]
    finally:
        browser.close()
