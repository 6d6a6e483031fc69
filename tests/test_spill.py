"""A clip's rows spilled to Parquet a window at a time come back as the rows of one pass."""
import os
import subprocess
import sys

import numpy as np

from catalog.spill import SpillFolder
from pipeline.motion import MotionFeatures


def _motion(n: int, seed: int) -> MotionFeatures:
    r = np.random.default_rng(seed)
    return MotionFeatures(r.random((n, 96), np.float32), r.random((n, 96), np.float32), r.random((n, 96), np.float32),
                          r.random((n, 4), np.float32), r.random((n, 4, 18, 32), np.float32))


def test_spilled_windows_come_back_in_order_with_the_road_user_summary(tmp_path):
    folder = SpillFolder(tmp_path / "spill")
    clip = folder.clip("c1", "fs")
    sizes, start = (5, 7, 3), 0
    summary = np.arange(15 * 2, dtype=np.float32).reshape(15, 2)
    for k, n in enumerate(sizes):
        clip.add(start, np.arange(start, start + n) / 4.0, np.full((n, 8), k, np.float32), None, _motion(n, k))
        start += n
    got = {}
    for table, rows in clip.rows(summary, batch=4):   # batches that cut across windows
        got.setdefault(table, []).extend(rows.to_pylist())
    frames, motion = got["frame_features"], got["motion_features"]
    assert [r["frame_idx"] for r in frames] == list(range(15)) == [r["frame_idx"] for r in motion]
    assert [r["clip_embedding"][0] for r in frames] == [0] * 5 + [1] * 7 + [2] * 3
    assert all(r["embclip"] is None for r in frames)
    assert [r["object_summary"] for r in motion] == summary.tolist()
    clip.remove()
    folder.remove()
    assert not (tmp_path / "spill").exists()


def test_a_dead_process_spill_folder_is_removed_by_the_next_run(tmp_path):
    root = tmp_path / "spill"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = root / f"{dead.stdout.strip()}-abcd"
    leftover.mkdir(parents=True)
    mine = SpillFolder(root)
    assert not leftover.exists() and mine.path.exists() and mine.path.name.startswith(f"{os.getpid()}-")
    mine.remove()
