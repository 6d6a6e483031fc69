"""Flow stacks as the cascade stores them (contracts/flow_stacks.py): 8 bits with a scale per channel and frame,
every cell inside windows, block means outside; read back at the feature set's stack size."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from contracts.flow_stacks import coarse_stacks, pack_stacks, unpack_stacks

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CLIP = SHARED / "data" / "real_negatives" / "dad_test_neg_000830.mp4"
YOLO = SHARED / "models" / "yolo_fastest"


def test_dense_frames_come_back_within_half_a_step_and_coarse_ones_as_their_block_means():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4, 18, 32)).astype(np.float32) * np.array([3, 1, 0.1, 0.01], np.float32)[None, :, None, None]
    dense = np.array([1, 1, 0, 0, 1, 0], bool)
    packed = pack_stacks(x, dense, (6, 8))
    assert [len(q) for q in packed.q] == [2304 if d else 192 for d in dense]
    back = unpack_stacks(packed.q, packed.scale, (18, 32), (6, 8)).reshape(x.shape)
    step = np.abs(x).max(axis=(2, 3)) / 127            # per channel and frame: a small channel keeps its detail
    assert (np.abs(back - x)[dense] <= step[dense][:, :, None, None] / 2 + 1e-7).all()
    means = np.repeat(np.repeat(coarse_stacks(x, (6, 8)), 3, 2), 4, 3)
    coarse_step = np.abs(coarse_stacks(x, (6, 8))).max(axis=(2, 3)) / 127
    assert (np.abs(back - means)[~dense] <= coarse_step[~dense][:, :, None, None] / 2 + 1e-7).all()
    assert not np.allclose(back[~dense], x[~dense], atol=0.05)   # coarse really is coarse
    with pytest.raises(ValueError, match="neither"):
        unpack_stacks([np.zeros(100, np.int8)], np.ones((1, 4)), (18, 32), (6, 8))


@pytest.mark.skipif(not (CLIP.is_file() and YOLO.is_dir()), reason="needs ../shared: a real clip and yolo_fastest")
def test_the_cascade_stores_stacks_densely_in_its_windows_and_dense_runs_keep_full_precision(tmp_path):
    """A real clip of normal driving (a window, calm after it), featurized with --dense and with the cascade: the
    dense run stores today's float stacks; the cascade's read back as the dense run's within 8 bits inside its
    windows, and as block means outside."""
    from catalog import Catalog
    from catalog.head_inputs import load_sequences
    from pipeline.featurize_options import FeaturizeOptions
    from steps.featurize import run_featurize
    from steps.ingest import run_ingest

    (tmp_path / "clips").mkdir()
    shutil.copy(CLIP, tmp_path / "clips")
    db = str(tmp_path / "c.duckdb")
    run_ingest([str(tmp_path / "clips")], db=db)
    stacks, lengths = {}, {}
    for dense in (True, False):
        cfg = FeaturizeOptions(stages="motion,objects", detector=f"darknet:{YOLO}", dense=dense).config()
        fs = run_featurize(db, cfg).feature_set_id
        with Catalog(db).read() as con:
            lengths[dense] = con.execute("SELECT flow_stack IS NULL, len(coalesce(flow_q, flow_stack)) FROM"
                                        " motion_features WHERE feature_set_id = ? ORDER BY frame_idx", [fs]).fetchall()
            (cid,) = con.execute("SELECT DISTINCT clip_id FROM motion_features").fetchone()
            stacks[dense] = load_sequences(con, fs, [cid], with_flow=True, with_embeddings=False).flow
    assert {r for r in lengths[True]} == {(False, 2304)}               # dense: full precision, as before
    packed = np.array([n for _, n in lengths[False]])
    assert all(null for null, _ in lengths[False]) and set(packed) == {2304, 192}   # both kinds on this clip
    full, back = stacks[True].reshape(-1, 4, 18, 32), stacks[False].reshape(-1, 4, 18, 32)
    step = np.abs(full).max(axis=(2, 3)) / 127
    inside = packed == 2304
    assert (np.abs(back - full)[inside] <= step[inside][:, :, None, None] / 2 + 1e-6).all()
    means = np.repeat(np.repeat(coarse_stacks(full, (6, 8)), 3, 2), 4, 3)
    assert np.abs(back - means)[~inside].max() <= np.abs(means).max() / 127
