"""Long clips stream through featurize a window at a time: same numbers, memory that does not grow."""
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipeline.featurize_config import FeaturizeConfig
from steps.featurize import run_featurize
from steps.ingest import run_ingest
from pipeline.decode import DecodeSpec
from pipeline.embed import ClipSpec

ROOT = Path(__file__).resolve().parents[1]
YOLO = ROOT.parent / "shared" / "models" / "yolo_fastest"
# PyAV on both sides: clips longer than a window are decoded with PyAV (featurize_batch.py says why), and
# decord's frames differ from PyAV's in the last bits of scaling.
WHOLE = FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=4.0), batch_size=16,
                        device="cpu", projection_frames=24, window_s=float("inf"), decoder="pyav")


def rows(db: str, sql: str) -> list[tuple]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def close(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        np.allclose(np.asarray(u, float), np.asarray(v, float), atol=1e-4, equal_nan=True)
        if isinstance(u, (list, float)) else u == v for x, y in zip(a, b) for u, v in zip(x, y))


@pytest.mark.slow   # in the slow tier (bash scripts/test.sh -m slow)
def test_windows_store_the_numbers_of_one_pass(synth_dir, tmp_path):
    """With the detector when its weights are here (tracks then span windows), else without."""
    from pipeline.objects import ObjectsSpec
    detector = f"darknet:{YOLO}" if YOLO.exists() else None
    objects = ObjectsSpec(detector, fps=5.0) if detector else None
    dbs = {}
    for name, window in (("whole", float("inf")), ("windows", 0.8)):
        db = str(tmp_path / f"{name}.duckdb")
        run_ingest([str(synth_dir)], db=db)
        cfg = FeaturizeConfig(**{**WHOLE.__dict__, "window_s": window, "objects": objects})
        assert run_featurize(db, cfg).done == 8
        dbs[name] = db
    for sql in ("SELECT clip_id, frame_idx, t_s, clip_embedding, embclip FROM frame_features ORDER BY 1, 2",
                "SELECT clip_id, frame_idx, ego_speed, looming, fg_energy, flow_stack, object_summary"
                " FROM motion_features ORDER BY 1, 2",
                "SELECT clip_id, track_id, frame_idx, t_s, x1, y1, x2, y2, class, ttc_s, path_gap"
                " FROM objects ORDER BY 1, 3, 2",
                "SELECT clip_id, n_frames, object_frames FROM clip_features ORDER BY 1"):
        assert close(rows(dbs["whole"], sql), rows(dbs["windows"], sql)), sql


def _featurize_in_a_child(clip: Path, tmp_path: Path, budget_gb: float) -> dict:
    """Featurize one clip in its own process (so its peak RSS is its own), under a memory budget."""
    script = f"""
import json, resource, sys
sys.path.insert(0, {str(ROOT)!r})
from pipeline.featurize_config import FeaturizeConfig
from steps.featurize import run_featurize
from steps.ingest import run_ingest
from pipeline.decode import DecodeSpec
from pipeline.embed import ClipSpec
from bench.long_clip_bench import TreePeak
if __name__ == "__main__":
    db = {str(tmp_path / (clip.stem + '.duckdb'))!r}
    run_ingest([{str(clip)!r}], db=db)
    with TreePeak() as tree:   # this process and its decode children
        s = run_featurize(db, FeaturizeConfig(clip=ClipSpec(untrained=True), decode=DecodeSpec(sample_fps=1.0),
                                              device="cpu", batch_size=32, window_s=30.0))
    import duckdb
    decoder = duckdb.connect(db, read_only=True).execute("SELECT decoder FROM clip_features").fetchall()[0][0]
    print(json.dumps({{"done": s.done, "frames": s.frames, "failures": s.failures, "decoder": decoder,
                      "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "children": tree.children_peak_mib}}))
"""
    env = {**os.environ, "NEARMISS_MEMORY_BUDGET_GB": str(budget_gb)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow   # minutes on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_a_long_clip_streams_under_a_budget_it_would_exceed_whole(tmp_path):
    """A 6-minute clip (low resolution, 1 sampled frame a second, so the test is quick) under a 0.15 GiB
    budget: held whole, its decoded frames alone (360 samples and the frames before them) would exceed it
    and the clip would be refused; in 30-second windows it is featurized, and its peak RSS stays within
    a generous margin of a 2-minute clip's."""
    sys.path.insert(0, str(ROOT))
    from bench.long_clip_bench import render
    from pipeline.decode import check_plan, output_size

    short, long = tmp_path / "two_minutes.mp4", tmp_path / "six_minutes.mp4"
    render(short, 2, fps=8, size=(160, 90))
    render(long, 6, fps=8, size=(160, 90))
    w, h = output_size(160, 90, DecodeSpec())
    with pytest.raises(Exception, match="over the memory budget"):
        check_plan(2 * 360, w, h, int(0.15 * (1 << 30)))   # the whole clip at once
    a, b = _featurize_in_a_child(short, tmp_path, 0.15), _featurize_in_a_child(long, tmp_path, 0.15)
    assert (a["done"], b["done"], b["frames"]) == (1, 1, 360), (a["failures"], b["failures"])
    assert b["decoder"] == "pyav"   # decord's memory grows with a long file decoded a window at a time
    assert b["peak"] - a["peak"] < 1024, f"peak RSS grew by {b['peak'] - a['peak']:.0f} MiB from 2 to 6 minutes"
    assert b["children"] < 1024, f"the decode child held {b['children']:.0f} MiB"   # one window, not the clip
