"""Ingest on real footage: the codecs, rates and sizes real dashcams produce."""
import csv

import pytest

from catalog import Catalog
from conftest import REAL_DASHCAM
from steps.ingest import run_ingest

pytestmark = [pytest.mark.real_data,
              pytest.mark.skipif(not REAL_DASHCAM.is_dir(), reason="../shared/data/real_dashcam is absent")]


def test_real_clips_ingest_with_plausible_metadata(db):
    expected = {r["file"] for r in csv.DictReader((REAL_DASHCAM / "labels.csv").open())}
    summary = run_ingest([str(REAL_DASHCAM)], db=db)
    assert summary.failed == 0 and summary.new + summary.duplicate == len(expected)
    with Catalog(db).read() as con:
        rows = con.execute("SELECT p.path, c.fps, c.width, c.height, c.duration_s, c.n_frames, c.codec"
                           " FROM clips c JOIN clip_paths p ON p.clip_id = c.id").fetchall()
    assert {r[0].rsplit("/", 1)[1] for r in rows} == expected
    for path, fps, w, h, duration, n, codec in rows:
        assert 9 <= fps <= 61, path
        assert 320 <= w <= 1920 and 180 <= h <= 1080, path
        assert duration == pytest.approx(n / fps, rel=0.1), path
        assert codec, path


def test_real_clips_featurize(db):
    from pipeline.featurize_config import FeaturizeConfig
    from steps.featurize import run_featurize
    from pipeline.decode import DecodeSpec

    files = [r["file"] for r in csv.DictReader((REAL_DASHCAM / "labels.csv").open())]
    run_ingest([str(REAL_DASHCAM)], db=db)
    # Decoding and motion on every real codec, size and rate; CLIP adds nothing to what this checks.
    s = run_featurize(db, FeaturizeConfig(clip=None, decode=DecodeSpec(sample_fps=1.0), device="cpu"))
    assert (s.done, s.failed) == (len(files), 0)
    with Catalog(db).read() as con:
        bad = con.execute("SELECT count(*) FROM clip_features c JOIN clips k ON k.id = c.clip_id"
                          " WHERE c.n_frames NOT BETWEEN floor(k.duration_s) - 1 AND ceil(k.duration_s) + 1").fetchone()
        speeds = con.execute("SELECT count(*) FILTER (WHERE isnan(ego_speed) OR isinf(ego_speed)) FROM motion_features").fetchone()
    assert bad == (0,) and speeds == (0,)
