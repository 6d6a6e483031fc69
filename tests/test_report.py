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
