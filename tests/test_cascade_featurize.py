"""Featurize with the triage cascade on a real clip, against --dense: what is stored densely, and only where."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from contracts.flow_stacks import coarse_stacks

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CLIP = SHARED / "data" / "real_negatives" / "dad_test_neg_000830.mp4"   # normal driving: a window, calm after it
YOLO = SHARED / "models" / "yolo_fastest"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The clip featurized twice into one catalog (random CLIP weights, the real detector): --dense and the cascade.
    Per run: the motion rows' stacks as stored, the frame rows' indexes, and the sequences the heads read."""
    if not (CLIP.is_file() and YOLO.is_dir()):
        pytest.skip("needs ../shared: a real clip and yolo_fastest")
    from catalog import Catalog
    from catalog.head_inputs import load_sequences
    from pipeline.featurize_options import FeaturizeOptions
    from steps.featurize import run_featurize
    from steps.ingest import run_ingest

    root = tmp_path_factory.mktemp("cascade")
    (root / "clips").mkdir()
    shutil.copy(CLIP, root / "clips")
    db = str(root / "c.duckdb")
    run_ingest([str(root / "clips")], db=db)
    out = {}
    for dense in (True, False):
        cfg = FeaturizeOptions(detector=f"darknet:{YOLO}", untrained=True, device="cpu", batch_size=16,
                               dense=dense).config()
        fs = run_featurize(db, cfg).feature_set_id
        with Catalog(db).read() as con:
            stored = con.execute("SELECT frame_idx, flow_stack IS NULL, len(coalesce(flow_q, flow_stack)) FROM"
                                 " motion_features WHERE feature_set_id = ? ORDER BY frame_idx", [fs]).fetchall()
            frames = [r[0] for r in con.execute("SELECT frame_idx FROM frame_features WHERE feature_set_id = ?"
                                                " ORDER BY frame_idx", [fs]).fetchall()]
            (cid,) = con.execute("SELECT DISTINCT clip_id FROM motion_features").fetchone()
            seqs = load_sequences(con, fs, [cid], with_flow=True)
        out[dense] = {"stored": stored, "frames": frames, "seqs": seqs}
    return out


def test_dense_keeps_todays_rows_every_frame_embedded_and_full_precision_stacks(runs):
    dense = runs[True]
    assert {(null, n) for _, null, n in dense["stored"]} == {(False, 2304)}
    assert dense["frames"] == [k for k, _, _ in dense["stored"]]


def test_the_cascade_keeps_stacks_densely_in_its_windows_and_block_means_elsewhere(runs):
    """Read back as the dense run's stacks within 8 bits inside the windows, and as their block means outside."""
    packed = np.array([n for _, _, n in runs[False]["stored"]])
    assert all(null for _, null, _ in runs[False]["stored"]) and set(packed) == {2304, 192}   # both on this clip
    full = runs[True]["seqs"].flow.reshape(-1, 4, 18, 32)
    back = runs[False]["seqs"].flow.reshape(-1, 4, 18, 32)
    step = np.abs(full).max(axis=(2, 3)) / 127
    inside = packed == 2304
    assert (np.abs(back - full)[inside] <= step[inside][:, :, None, None] / 2 + 1e-6).all()
    means = np.repeat(np.repeat(coarse_stacks(full, (6, 8)), 3, 2), 4, 3)
    assert np.abs(back - means)[~inside].max() <= np.abs(means).max() / 127


def test_the_cascade_embeds_every_frame_in_its_windows_and_one_a_second_elsewhere(runs):
    """Frame rows say the rate: 4 a second inside the windows, 1 a second outside; the heads still read one
    embedding per sampled frame, the nearest embedded one's, the same as the dense run's where embedded."""
    stored, frames = runs[False]["stored"], np.array(runs[False]["frames"])
    inside = np.array([n == 2304 for _, _, n in stored])
    idx = np.array([k for k, _, _ in stored])
    assert set(idx[inside]) <= set(frames)                               # every frame inside a window
    outside = np.setdiff1d(idx[~inside], frames)
    assert len(outside) >= 2 * (len(idx[~inside]) - len(outside))        # at most 1 of 4 (4 fps) embedded outside
    assert len(frames) < len(idx)
    seqs, dense = runs[False]["seqs"], runs[True]["seqs"]
    assert len(seqs.times) == len(idx) and np.allclose(seqs.times, dense.times)
    at = np.searchsorted(idx, frames)
    assert np.allclose(seqs.clip[at], dense.clip[at], atol=1e-4)        # embedded frames: the same numbers
    skipped = np.setdiff1d(np.arange(len(idx)), at)
    for j in skipped:   # a nearest embedded frame's embedding (either, on a tie)
        dist = np.abs(at - j)
        assert any(np.array_equal(seqs.clip[j], seqs.clip[a]) for a in at[dist == dist.min()])
    assert not np.allclose(seqs.clip[skipped], dense.clip[skipped])
