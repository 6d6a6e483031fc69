"""Scene cuts: found where two shots are spliced together, not in continuous driving, and no track crosses one."""
from pathlib import Path

import numpy as np
import pytest

from pipeline.decode import DecodeSpec, make_decoder
from pipeline.detect import Detections
from pipeline.objects import ObjectsSpec, track_objects
from pipeline.scene_cuts import find_cuts, frame_signatures

SPEC = ObjectsSpec(detector="test")
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_dashcam"


def _detector_frames(path: Path, seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    s = make_decoder("pyav").decode(str(path), DecodeSpec(sample_fps=1.0, height=90), extra_fps=10.0)
    keep = s.extra_times_s < seconds if seconds else slice(None)
    return s.extra_frames[keep], s.extra_times_s[keep]


def test_a_cut_is_found_where_two_synthetic_shots_are_spliced(synth_dir):
    a, b = sorted(synth_dir.glob("*.mp4"))[:2]
    fa, ta = _detector_frames(a, 1.5)
    fb, _ = _detector_frames(b, 1.5)
    frames = np.concatenate([fa, fb])
    times = np.arange(len(frames)) / 10.0
    cuts = find_cuts(frame_signatures(frames), times, SPEC.cut_distance)
    assert list(cuts) == [pytest.approx(len(fa) / 10.0)]
    assert len(find_cuts(frame_signatures(fa), ta, SPEC.cut_distance)) == 0   # each shot alone: none
    assert len(find_cuts(frame_signatures(frames), times, 0.0)) == 0          # 0: never looked for


@pytest.mark.real_data
@pytest.mark.slow   # the real clips: in the slow tier
@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/data/real_dashcam")
@pytest.mark.parametrize("clip", ["dad_000478.mp4", "udacity_solidWhiteRight.mp4", "highway_dusk_kartikeybihani_dashcam.mp4"])
def test_no_cut_in_continuous_real_driving(clip):
    frames, times = _detector_frames(REAL / clip)
    cuts = find_cuts(frame_signatures(frames), times, SPEC.cut_distance)
    # the dusk clip's very first frame is another, darker picture (distance 0.72 to the next; every later
    # pair of frames 0.25 at most): a shot of one frame, then continuous driving to the end
    assert all(c <= 0.1 for c in cuts) and (len(cuts) == 0 or clip.startswith("highway_dusk"))


def test_no_track_crosses_a_cut():
    """The same box on either side of a cut is two road users, one per shot."""
    times = np.arange(20) / 10.0
    box = np.array([[0.4, 0.5, 0.5, 0.6]], np.float32)
    dets = [Detections(box, np.array([0.9], np.float32), ["car"]) for _ in times]
    whole = track_objects(dets, times, SPEC)
    assert len(set(whole.track_id)) == 1
    shot_a, shot_b = np.full((10, 16), 1 / 16), np.zeros((10, 16))
    shot_b[:, 0] = 1.0   # two shots of unlike colour: a cut at 1.0 s
    split = track_objects(dets, times, SPEC, signatures=np.concatenate([shot_a, shot_b]).astype(np.float32))
    assert list(split.cuts) == [pytest.approx(1.0)]
    ids = {t: i for t, i in zip(split.t_s, split.track_id)}
    assert len(set(split.track_id)) == 2
    assert {ids[t] for t in times if t < 1.0} != {ids[t] for t in times if t >= 1.0}
