"""The objects stage's triage cascade (pipeline/cascade.py): windows open where the cheap pass sees something, the
detector runs densely only there, --dense keeps today's dense rows, and the feature set records the settings."""
from dataclasses import replace

import numpy as np

from pipeline.cascade import base_indices, trigger_times, window_mask
from pipeline.detections import Detections
from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
from pipeline.objects import ObjectStage, ObjectsSpec

FPS = 10.0
SPEC = replace(ObjectsSpec("darknet:/nowhere"), base_fps=2.5)


def scene(t: np.ndarray, loom_at: float | None) -> list[Detections]:
    """A car ahead keeping its distance (a little jitter), and from loom_at on one closing at 8 m/s from 30 m."""
    rng = np.random.default_rng(0)
    out = []
    for x in t:
        boxes = [[0.30, 0.50, 0.40, 0.50 + 0.08 * (1 + rng.normal(0, 0.02))]]
        if loom_at is not None and x >= loom_at:
            h = 0.09 * 30 / max(30 - 8 * (x - loom_at), 4)
            boxes.append([0.55 - h, 0.55 - h / 2, 0.55 + h, 0.55 + h / 2])
        out.append(Detections(np.array(boxes, np.float32), np.full(len(boxes), 0.8, np.float32),
                              ["car"] * len(boxes)))
    return out


class SceneDetector:
    """Stands in for the network in this test only: what it "sees" at each frame is the scene's boxes at that
    frame's time (the frames carry their index in their first pixel), and it counts what it was asked for."""
    name, identity = "scene", "scene:test"

    def __init__(self, t: np.ndarray, loom_at: float | None):
        self.boxes, self.asked = scene(t, loom_at), []

    def detect(self, frames: np.ndarray) -> list[Detections]:
        idx = [int(f[0, 0, 0]) + 256 * int(f[0, 0, 1]) for f in frames]
        self.asked += idx
        return [self.boxes[i] for i in idx]


def frames_for(n: int) -> np.ndarray:
    f = np.zeros((n, 9, 16, 3), np.uint8)
    f[:, 0, 0, 0], f[:, 0, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return f


def test_a_window_opens_around_a_looming_road_user_and_nothing_outside_is_detected_densely():
    t = np.arange(200) / FPS                          # 20 s
    stage = ObjectStage(SPEC, SceneDetector(t, loom_at=12.0))
    dets, kept, _ = stage.detect_window(frames_for(len(t)), t)
    base = set(base_indices(t, SPEC.base_fps).tolist())
    assert len(base) == 50
    dense = sorted(set(kept.tolist()) - base)
    assert dense, "the looming car opened no window"
    window_t = t[dense]
    # the window covers the approach (from before 12 s to at least 14 s) and nothing of the calm first 9 s
    assert window_t.min() >= 12.0 - SPEC.trigger_before_s - 0.5 and window_t.min() <= 12.5
    assert window_t.max() >= 14.0
    assert not any(x < 9.0 for x in window_t)
    assert sorted(stage.detector.asked) == sorted(kept.tolist())   # every frame detected once, no more
    assert len(kept) < len(t) * 0.6


def test_calm_driving_is_detected_at_the_base_rate_only_and_dense_gives_every_frame():
    t = np.arange(200) / FPS
    calm = ObjectStage(SPEC, SceneDetector(t, loom_at=None))
    dets, kept, _ = calm.detect_window(frames_for(len(t)), t)
    assert kept.tolist() == base_indices(t, SPEC.base_fps).tolist()
    dense = ObjectStage(replace(SPEC, dense=True), SceneDetector(t, loom_at=12.0))
    dets, kept, _ = dense.detect_window(frames_for(len(t)), t)
    assert kept.tolist() == list(range(len(t))) and len(dets) == len(t)
    # the tracks of the cascade say where on the detector's grid they were taken, and how long the grid is
    tracks = ObjectStage(SPEC, SceneDetector(t, loom_at=12.0)).run(frames_for(len(t)), t, None)
    assert tracks.frames == len(t) and tracks.fps == FPS
    assert np.allclose(tracks.frame_idx, np.rint(tracks.t_s * FPS))


def test_two_road_users_closing_on_each_other_and_a_cut_open_windows():
    t = np.arange(0, 4, 0.4)
    dets = []
    for x in t:   # two cars 1.8 of their heights apart, closing at 1.8 heights a second from 1.6 s
        gap = 0.1 - 0.1 * max(x - 1.6, 0)
        boxes = np.array([[0.2, 0.5, 0.3, 0.6], [0.3 + gap, 0.5, 0.4 + gap, 0.6]], np.float32)
        dets.append(Detections(boxes, np.full(2, 0.8, np.float32), ["car", "car"]))
    why = {}
    fired = trigger_times(t, dets, SPEC, 16 / 9, cuts=np.array([0.8]), why=why)
    assert why.get("pair", 0) >= 1 and why["cut"] == 1 and 0.8 in fired and fired.max() >= 2.0
    mask = window_mask(np.arange(0, 10, 0.1), np.array([5.0]), 2.0, 1.0)
    assert np.allclose(np.arange(0, 10, 0.1)[mask][[0, -1]], [3.0, 6.0])


def test_a_feature_set_made_with_the_cascade_records_its_settings_and_dense_keeps_its_id(monkeypatch):
    import pipeline.featurize_config as fc

    monkeypatch.setattr(fc, "detector_identity", lambda spec: "darknet:test:0")
    dense = FeaturizeConfig(clip=None, objects=replace(SPEC, dense=True))
    cascade = FeaturizeConfig(clip=None, objects=SPEC)
    dense_id, _, dense_cfg = feature_set_identity(dense)
    cascade_id, _, cascade_cfg = feature_set_identity(cascade)
    assert dense_id != cascade_id
    assert "base_fps" not in dense_cfg["objects"] and "loom_rate" not in dense_cfg["objects"]
    assert cascade_cfg["objects"]["base_fps"] == 2.5 and cascade_cfg["objects"]["trigger_before_s"] == 2.0


def test_a_window_opens_around_a_hard_brake_seen_by_the_motion_stage():
    """A car cruising (speed proxy 0.8/s) brakes to a stop at 10 s: the motion stage's frames (4 a second) open a
    window there although no road user looms; calm motion opens none."""
    t = np.arange(200) / FPS
    mt = np.arange(80) / 4.0
    ego = np.zeros((len(mt), 4), np.float32)
    ego[:, 0] = np.where(mt < 10.0, 0.8, 0.05)
    stage = ObjectStage(SPEC, SceneDetector(t, loom_at=None))
    why = {}
    dets, kept, _ = stage.detect_window(frames_for(len(t)), t, mt, ego, why)
    dense = t[sorted(set(kept.tolist()) - set(base_indices(t, SPEC.base_fps).tolist()))]
    assert why.get("brake", 0) >= 1 and dense.min() >= 7.0 and dense.max() <= 13.0 and len(dense) > 20
    ego[:, 0] = 0.8
    assert ObjectStage(SPEC, SceneDetector(t, loom_at=None)).detect_window(frames_for(len(t)), t, mt, ego)[1].tolist() \
        == base_indices(t, SPEC.base_fps).tolist()


def test_the_tracker_counts_time_over_the_frames_the_cascade_skips():
    """A car ahead for 4 s, gone for 1.6 s, then another in its place: longer than a track survives unseen
    (lost_s, 0.7 s), so the second is a new road user, as the dense run says. Seen at the base rate only (calm
    driving opens no window), the tracker takes the base frames as consecutive, counts 4 frames unseen, not 16,
    and hands the second car the first one's track: the track is cut where the time unseen was too long."""
    t = np.arange(120) / FPS

    class Replaced(SceneDetector):
        def __init__(self):
            super().__init__(t, loom_at=None)
            for k, x in enumerate(t):
                seen = int(x < 4.0 or x >= 5.6)
                self.boxes[k] = Detections(np.array([[0.45, 0.5, 0.53, 0.6]] * seen, np.float32).reshape(-1, 4),
                                           np.full(seen, 0.9, np.float32), ["car"] * seen)

    for spec in (SPEC, replace(SPEC, dense=True)):
        tracks = ObjectStage(spec, Replaced()).run(frames_for(len(t)), t, None)
        before, after = set(tracks.track_id[tracks.t_s < 4.0]), set(tracks.track_id[tracks.t_s >= 5.6])
        assert len(before) == len(after) == 1 and before != after, (spec.dense, before, after)


def test_a_track_keeps_its_speed_where_the_cascade_changes_step():
    """Car A drives across at 0.05 frame widths/s, seen at the base rate (0.02 a base frame); a window opens (a car
    looming elsewhere) on the frame after A was last seen, and 0.4 s later car B comes out 0.08 further on, where
    A's motion per base frame taken as its motion per window frame would put it. The tracker moves a track by its
    velocity once per update: rescaled to the window's step, A is predicted 0.02 on and B is a new road user, as
    in the dense run; not rescaled, B was handed A's track."""
    t = np.arange(100) / FPS

    class HandOver(SceneDetector):
        def __init__(self):
            super().__init__(t, loom_at=5.0)
            for k, x in enumerate(t):
                centre = 0.05 + 0.05 * x if k <= 40 else 0.33 + 0.05 * (x - 4.4) if k >= 44 else None
                if centre is not None:
                    b = self.boxes[k]
                    self.boxes[k] = Detections(np.r_[b.boxes, [[centre - 0.03, 0.30, centre + 0.03, 0.38]]].astype(
                        np.float32), np.r_[b.scores, [0.9]].astype(np.float32), list(b.coco) + ["car"])

    for spec in (SPEC, replace(SPEC, dense=True)):
        detector = HandOver()
        tracks = ObjectStage(spec, detector).run(frames_for(len(t)), t, None)
        if not spec.dense:   # the premise: base frames up to A's last, then the window's consecutive frames
            assert {36, 40, 41, 42, 43, 44} <= set(detector.asked) and not {37, 38, 39} & set(detector.asked)
        a_or_b = np.abs(tracks.boxes[:, 3] - 0.38) < 1e-3
        before = set(tracks.track_id[a_or_b & (tracks.t_s <= 4.0)])
        after = set(tracks.track_id[a_or_b & (tracks.t_s >= 4.4)])
        assert len(before) == len(after) == 1 and before != after, (spec.dense, before, after)


def test_a_clip_fed_a_decode_window_at_a_time_gets_the_windows_of_one_pass():
    """A long clip is decoded a window at a time (pipeline/cascade_stream.py): a car looming from 6.2 s and a hard
    brake at 13.1 s, whose windows reach back over decode windows already seen, and a brake judged on motion still
    to come. Fed in windows of 0.7, 1.3 and 5 s, the cascade detects the same frames, opens the same windows and
    counts each trigger once, as over the whole clip in one pass."""
    t = np.arange(200) / FPS
    mt = np.arange(80) / 4.0
    ego = np.zeros((len(mt), 4), np.float32)
    ego[:, 0] = np.where(mt < 13.1, 0.8, 0.05)
    whole_why: dict = {}
    whole = ObjectStage(SPEC, SceneDetector(t, loom_at=6.2)).detect_window(frames_for(len(t)), t, mt, ego, whole_why)
    assert {"loom", "brake"} <= set(whole_why) and len(whole.kept) < len(t)
    for window_s in (0.7, 1.3, 5.0):
        why: dict = {}
        stream = ObjectStage(SPEC, SceneDetector(t, loom_at=6.2)).stream(why)
        frames, times, dets = frames_for(len(t)), [], []
        edges = np.arange(0.0, 20.0 + window_s, window_s)
        for a, b in zip(edges, edges[1:]):
            k, m = (t >= a - 1e-9) & (t < b - 1e-9), (mt >= a - 1e-9) & (mt < b - 1e-9)
            found = stream.feed(frames[k], t[k], mt[m], ego[m])
            so_far = np.concatenate(times) if times else np.zeros(0)
            assert not len(so_far) or not len(found.times) or found.times[0] > so_far[-1]   # in time order
            times.append(found.times)
            dets += found.dets
        found = stream.feed(frames[:0], t[:0], last=True)
        times.append(found.times)
        dets += found.dets
        assert np.array_equal(np.concatenate(times), t[whole.kept]), window_s
        assert np.array_equal(stream.triggers, whole.triggers) and why == whole_why, window_s
        assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(dets, whole.dets))
