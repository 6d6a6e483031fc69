"""Flow stacks as the cascade stores them (contracts/flow_stacks.py): 8 bits with a scale per channel and frame,
every cell inside windows, block means outside; read back at the feature set's stack size."""
import numpy as np
import pytest

from contracts.flow_stacks import coarse_stacks, pack_stacks, unpack_stacks


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
