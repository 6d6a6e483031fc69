import json

import numpy as np
import pytest

from pipeline.decode import DecodeSpec, make_decoder, sample_times
from pipeline.motion import MotionSpec, motion_features
from pipeline.synth.dataset import TRUTH_DIR


def test_sample_times_cover_the_clip():
    assert sample_times(2.6, 4.0).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5]


def test_decoders_agree_on_times_and_pixels(synth_dir):
    spec = DecodeSpec(sample_fps=4.0, height=112)
    for clip in sorted(synth_dir.glob("*.mp4"))[:3]:
        a = make_decoder("decord").decode(str(clip), spec)
        b = make_decoder("pyav").decode(str(clip), spec)
        assert a.frames.shape == b.frames.shape and a.frames.shape[1:] == (112, 200, 3)
        np.testing.assert_allclose(a.times_s, b.times_s)
        assert np.abs(a.frames.astype(float) - b.frames.astype(float)).mean() < 2.0
        assert np.abs(a.prev_frames.astype(float) - b.prev_frames.astype(float)).mean() < 2.0
        assert (a.prev_dt_s[1:] > 0).all() and np.allclose(a.prev_dt_s[1:], 1 / 15, atol=1e-3)


def test_truncated_clip_fails_clearly(synth_dir, tmp_path):
    from pipeline.decode import DecodeError
    data = (synth_dir / "synth_s11_00000.mp4").read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) // 2])
    for name in ("decord", "pyav"):
        with pytest.raises(DecodeError):
            make_decoder(name).decode(str(bad), DecodeSpec())


def _motion(clip, flow="dis"):
    s = make_decoder("decord").decode(str(clip), DecodeSpec(sample_fps=5.0))
    return s, motion_features(s.frames, s.prev_frames, s.prev_dt_s, MotionSpec(flow=flow))


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_ego_speed_proxy_tracks_rendered_speed_and_shows_braking(isolated_dir):
    corr = []
    for truth_path in sorted((isolated_dir / TRUTH_DIR).glob("*.json")):
        truth = json.loads(truth_path.read_text())
        s, m = _motion(isolated_dir / (truth_path.stem + ".mp4"))
        v = np.asarray(truth["ego_speed_mps"])[np.clip(np.round(s.times_s * truth["fps"]).astype(int), 0, len(truth["ego_speed_mps"]) - 1)]
        if np.std(v[1:]) > 0.3:
            corr.append(np.corrcoef(m.ego[1:, 0], v[1:])[0, 1])
        if truth["event"]:  # near misses brake hard: the proxy drops after the event starts
            start = int(np.searchsorted(s.times_s, truth["event"]["start_s"]))
            assert m.ego[start:, 0].min() < 0.7 * np.median(m.ego[1:start, 0]), truth_path.name
    assert corr and np.median(corr) > 0.9, corr


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_foreground_energy_concentrates_on_the_moving_road_user(isolated_dir):
    """Cells overlapping the key actor carry more foreground energy than the rest of the frame."""
    ratios, hits, frames = [], 0, 0
    grid = MotionSpec().grid
    for truth_path in sorted((isolated_dir / TRUTH_DIR).glob("*.json")):
        truth = json.loads(truth_path.read_text())
        s, m = _motion(isolated_dir / (truth_path.stem + ".mp4"))
        key = truth["key_actor"]
        for k in range(1, len(s.times_s)):
            i = min(int(round(s.times_s[k] * truth["fps"])), truth["n_frames"] - 1)
            box = key["boxes"][i]
            if box is None or key["ground_speed_mps"][i] < 0.5 or box[3] - box[1] < 0.15 * 180:
                continue
            inside = np.zeros(grid[0] * grid[1], bool)
            for c in range(len(inside)):
                r, col = divmod(c, grid[1])
                x0, y0, x1, y1 = col * 320 / grid[1], r * 180 / grid[0], (col + 1) * 320 / grid[1], (r + 1) * 180 / grid[0]
                inside[c] = x0 < box[2] and box[0] < x1 and y0 < box[3] and box[1] < y1
            e = m.fg_energy[k]
            ratios.append(e[inside].mean() / max(e[~inside].mean(), 1e-6))
            hits += bool(inside[int(np.argmax(e))])
            frames += 1
    assert frames >= 10
    print(f"max-energy cell on the actor in {hits}/{frames} frames; median energy ratio {np.median(ratios):.2f}")
    assert np.median(ratios) > 1.5


@pytest.mark.parametrize("name", ["decord", "pyav"])
def test_windows_together_are_the_whole_clip(synth_dir, name):
    """A long clip is decoded a window at a time; the windows hold exactly the frames of one pass."""
    clip = sorted(synth_dir.glob("*.mp4"))[0]
    spec = DecodeSpec(sample_fps=5.0)
    decoder = make_decoder(name)
    whole = next(iter(decoder.windows(str(clip), spec, extra_fps=10.0)))
    parts = list(decoder.windows(str(clip), spec, extra_fps=10.0, window_s=0.7))
    assert len(parts) >= 3
    for field in ("frames", "times_s", "prev_frames", "prev_dt_s", "extra_frames", "extra_times_s"):
        joined = np.concatenate([getattr(p, field) for p in parts])
        assert np.array_equal(joined, getattr(whole, field)), field
    assert all(p.times_s[-1] < q.times_s[0] for p, q in zip(parts, parts[1:]))


@pytest.mark.parametrize("name", ["decord", "pyav"])
def test_the_detector_frames_have_their_own_resolution_apart_from_motion_and_clip(synth_dir, name):
    """One decode serves both: the detector's frames at their own height from the clip's native frames, the
    motion and CLIP frames at the spec's height, scaled down from the same decoded frames; never above the clip."""
    clip = sorted(synth_dir.glob("*.mp4"))[0]        # 320 x 180
    spec = DecodeSpec(sample_fps=5.0, height=90)
    decoder = make_decoder(name)
    same = decoder.decode(str(clip), spec, extra_fps=10.0)
    own = decoder.decode(str(clip), spec, extra_fps=10.0, extra_height=180)
    assert same.frames.shape[1:3] == same.extra_frames.shape[1:3] == (90, 160)
    assert own.extra_frames.shape[1:3] == (180, 320) and own.frames.shape[1:3] == (90, 160)
    assert own.prev_frames.shape == own.frames.shape
    assert np.array_equal(own.times_s, same.times_s) and np.array_equal(own.extra_times_s, same.extra_times_s)
    # the main frames are the same pictures, scaled by another path: within a few grey levels on average
    assert np.abs(own.frames.astype(int) - same.frames.astype(int)).mean() < 4
    # a detector frame scaled down is the motion frame at the same time
    at = {round(t, 6): k for k, t in enumerate(own.extra_times_s)}
    k, j = next((k, at[round(t, 6)]) for k, t in enumerate(own.times_s) if round(t, 6) in at)
    import cv2
    small = cv2.resize(own.extra_frames[j], (160, 90), interpolation=cv2.INTER_AREA)
    assert np.array_equal(small, own.frames[k])
    capped = decoder.decode(str(clip), spec, extra_fps=10.0, extra_height=720)   # not above the clip's 180
    assert capped.extra_frames.shape[1:3] == (180, 320)



@pytest.mark.parametrize("as_list", [False, True])
def test_each_rate_is_gathered_straight_from_the_decoded_frames(as_list):
    """decord hands a window's frames as one array, PyAV as a list: either way the detector's rate gets its frames
    as decoded, the main rate its frames and the frames before them scaled down, each its own array."""
    import cv2

    from pipeline.decode import split_rates
    rng = np.random.default_rng(0)
    decoded, before = (rng.integers(0, 256, (7, 36, 64, 3), np.uint8) for _ in range(2))
    rows, prev_rows = np.array([0, 2, 3, 5, 6]), np.array([4, 1, 2, 3, 5])
    times, dt = np.arange(5) * 0.1, np.arange(5) * 0.01 + 0.03
    main_at, extra_at = np.array([0, 2, 4]), np.arange(5)
    given = (list(decoded), list(before)) if as_list else (decoded, before)
    s = split_rates(given[0], rows, given[1], prev_rows, times, dt, 30.0, main_at, extra_at, 10.0, (32, 18))
    assert np.array_equal(s.extra_frames, decoded[rows]) and np.array_equal(s.extra_times_s, times)
    small = lambda f: cv2.resize(f, (32, 18), interpolation=cv2.INTER_AREA)  # noqa: E731
    assert np.array_equal(s.frames, np.stack([small(decoded[r]) for r in rows[main_at]]))
    assert np.array_equal(s.prev_frames, np.stack([small(before[r]) for r in prev_rows[main_at]]))
    assert np.array_equal(s.times_s, times[main_at]) and np.array_equal(s.prev_dt_s, dt[main_at])
    assert not np.shares_memory(s.extra_frames, decoded)   # the decoded window can go once the rates are out
    whole = split_rates(given[0], rows, given[1], prev_rows, times, dt, 30.0, main_at, extra_at, 0.0, (32, 18))
    assert whole.extra_frames is None   # one rate: every grid time, at the decoded size
    assert np.array_equal(whole.frames, decoded[rows]) and np.array_equal(whole.prev_frames, before[prev_rows])

def test_flow_magnitude_is_the_vector_norm_to_float_precision():
    """motion's fast flow length (hypot) stands in for torch's norm over the (u, v) axis: the stored
    descriptors may move by float rounding only (measured on six real clips: 8e-8 relative at most)."""
    import torch

    from pipeline.motion import _magnitude

    flow = torch.randn(3, 2, 36, 64) * torch.logspace(-3, 2, 64)  # sub-pixel to large displacements
    want = torch.linalg.vector_norm(flow, dim=1, keepdim=True)
    assert _magnitude(flow).shape == want.shape
    assert torch.allclose(_magnitude(flow), want, rtol=1e-6, atol=0)
