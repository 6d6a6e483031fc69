"""The conflict head's cues on synthetic tracks and ego-motion whose physics is known, its calibration
from normal driving, and the head end to end."""
import numpy as np
import pytest
import torch

from models.calibration import calibrate, poisson_interval, window_maxima
from models.conflict import ClipCues, CUES, ConflictHead, clip_cues
from models.cues.abrupt import shape_scores, stop_scores
from models.cues.ego import ego_cues
from models.cues.kinematics import KinematicsSpec, naive_rate, robust_scale, track_kinematics
from models.cues.pairwise import pair_conflicts
from models.cues.riders import RiderSpec, rider_class
from models.cues.tracks import clip_tracks
from models.head_registry import head_from_payload
from contracts.sequences import MOTION_GRIDS, MOTION_SCALARS, ClipLabel, ClipObjects, Sequences
from pipeline.motion import ego_motion
from pipeline.objects import ObjectsSpec, corridor_gap

FPS = 10.0
RNG = np.random.default_rng(3)


def box(cx, bottom, w, h):
    return [cx - w / 2, bottom - h, cx + w / 2, bottom]


def objects(tracks: dict[int, tuple[str, list]], seconds: float, aspect: float = 16 / 9) -> ClipObjects:
    """tracks: id -> (coco label, [(t, box), ...]) as a clip's stored objects rows."""
    rows = [(t, tid, np.asarray(b, np.float32), coco) for tid, (coco, seq) in tracks.items() for t, b in seq]
    rows.sort(key=lambda r: (r[0], r[1]))
    boxes = np.stack([r[2] for r in rows]) if rows else np.zeros((0, 4), np.float32)
    gap = corridor_gap(boxes, (0.5, 0.45), ObjectsSpec("test")) if rows else np.zeros(0)
    coco = np.asarray([r[3] for r in rows])
    cls = np.asarray(["pedestrian" if c == "person" else "bicycle" if c == "bicycle" else "vehicle" for c in coco])
    return ClipObjects(step_t_s=np.round(np.arange(int(seconds * FPS)) / FPS, 3),
                       t_s=np.asarray([r[0] for r in rows]), track_id=np.asarray([r[1] for r in rows], np.int32),
                       cls=cls, score=np.full(len(rows), 0.9, np.float32), ttc_s=np.full(len(rows), np.inf),
                       path_gap=gap.astype(np.float32), in_path=gap < 1, entering=np.zeros(len(rows), bool),
                       boxes=boxes, coco=coco, aspect=aspect)


def times(seconds):
    return np.round(np.arange(int(seconds * FPS)) / FPS, 3)


def quiet_motion(seconds, speed=0.5):
    t = np.arange(int(seconds * 4)) / 4
    m = np.zeros((len(t), len(MOTION_SCALARS)), np.float32)
    m[:, MOTION_SCALARS.index("ego_speed")] = speed
    return t, m


def jittery_follow(seconds, jitter=0.04, cx=0.5, h=0.2):
    """A car ahead keeping its distance, its box jittering by a few percent as a small detector's does."""
    out = []
    for t in times(seconds):
        s = np.exp(RNG.normal(0, jitter))
        out.append((t, box(cx + RNG.normal(0, 0.003), 0.7, 1.2 * h * s, h * s)))
    return out


def approach(seconds, z0, speed, cx=0.5, start=0.0):
    """A car closing at `speed` m/s from z0 m: its image scale is 1 / distance (TTC = distance / speed)."""
    return [(t, box(cx, 0.55 + 2.0 / (z0 - speed * (t - start)), 6.0 / (z0 - speed * (t - start)),
                    4.5 / (z0 - speed * (t - start)))) for t in times(seconds) if t >= start]


# --- robust kinematics ------------------------------------------------------------------------------

def test_robust_ttc_of_an_approaching_car_is_distance_over_speed():
    seq = approach(2.0, 30.0, 10.0)
    t = np.array([s[0] for s in seq])
    k = track_kinematics(t, np.array([s[1] for s in seq]))
    late = t >= 1.0          # the trailing window is whole
    rate = 10.0 / (30.0 - 10.0 * (t[late] - 0.5))   # the fit's slope is the rate at the window's centre
    assert np.allclose(k.rate[late], rate, rtol=0.1)
    assert np.all(k.ttc()[late] < 3.0)


def test_box_jitter_reads_as_danger_frame_to_frame_and_not_after_the_robust_fit():
    """On a car that keeps its distance, frame-to-frame growth of a 4 %-jittery box dips under the 1.5 s TTC
    of a serious conflict again and again; the robust fit's lower bound never does."""
    seq = jittery_follow(20.0)
    t, b = np.array([s[0] for s in seq]), np.array([s[1] for s in seq])
    naive_ttc = 1 / np.clip(naive_rate(t, b), 1e-9, None)
    robust_ttc = track_kinematics(t, b).ttc()
    assert (naive_ttc < 1.5).mean() > 0.05
    assert (robust_ttc < 3.0).mean() < 0.02
    assert np.nanstd(track_kinematics(t, b).rate) < 0.5 * np.nanstd(naive_rate(t, b))


def test_a_box_cut_by_the_frame_border_is_measured_by_the_side_it_still_has():
    # entering from the left: the visible width grows, the height does not
    b = np.array([[0.0, 0.4, 0.1 + 0.02 * k, 0.6] for k in range(10)])
    assert np.allclose(robust_scale(b), np.log(0.2))
    corner = np.array([[0.0, 0.4, 0.2, 1.0]])
    assert np.isnan(robust_scale(corner)).all()


# --- conflicts between other road users --------------------------------------------------------------

def _pair_clip(b_from: float, b_to: float, seconds=3.0, pass_through=False):
    """Car a stands at x=0.35; car b drives towards it at the same depth (bottoms level), reaching b_to."""
    a = [(t, box(0.35, 0.7, 0.15, 0.12)) for t in times(seconds)]
    bs = []
    for t in times(seconds):
        f = min(t / 1.5, 1.0)
        x = b_from + (b_to - b_from) * f
        if pass_through:
            x = b_from + (b_to - b_from) * t / 1.5
        bs.append((t, box(x, 0.7, 0.15, 0.12)))
    return objects({1: ("car", a), 2: ("car", bs)}, seconds)


def test_two_road_users_closing_to_contact_is_a_conflict_naming_both():
    o = _pair_clip(0.9, 0.5)        # b stops against a's right side (edges touch at 0.425)
    tracks = clip_tracks(o)
    score, who = pair_conflicts(tracks, len(o.step_t_s), o.step_t_s)
    k = int(np.argmax(score))
    assert score[k] > 0.5 and set(who[k]) == {1, 2}
    assert 1.0 <= o.step_t_s[k] <= 1.6
    (pred,) = ConflictHead().predict(_seqs([o], float(o.step_t_s[-1]) + 0.1))
    assert pred.incidents and pred.incidents[0].cue == "pair", [(i.cue, i.why) for i in pred.incidents or []]
    assert "road user #1 and road user #2" in pred.incidents[0].why or "road user #2 and road user #1" in \
        pred.incidents[0].why


def test_one_road_user_passing_in_front_of_another_is_no_conflict():
    o = _pair_clip(0.9, 0.0, pass_through=True)   # b sweeps on through a's place (a different depth)
    score, _ = pair_conflicts(clip_tracks(o), len(o.step_t_s), o.step_t_s)
    assert score.max() == 0


def test_road_users_keeping_apart_are_no_conflict():
    o = _pair_clip(0.9, 0.7)
    score, _ = pair_conflicts(clip_tracks(o), len(o.step_t_s), o.step_t_s)
    assert score.max() == 0


# --- abrupt dynamics -----------------------------------------------------------------------------------

def test_a_rider_falling_is_abrupt_and_an_upright_one_is_not():
    upright = [(t, box(0.6, 0.75, 0.06, 0.16) if t < 1.5 else box(0.6, 0.75, 0.16, 0.07)) for t in times(3.0)]
    o = objects({1: ("motorcycle", upright)}, 3.0)
    tr = clip_tracks(o)[0]
    fall = shape_scores(tr, [tr])
    assert fall.max() > 0.9 and tr.t_s[np.argmax(fall)] == pytest.approx(1.5)
    steady = objects({1: ("motorcycle", [(t, box(0.6, 0.75, 0.06 * np.exp(RNG.normal(0, 0.04)), 0.16))
                                        for t in times(3.0)])}, 3.0)
    tr = clip_tracks(steady)[0]
    assert shape_scores(tr, [tr]).max() == 0


def test_a_road_user_halting_from_speed_is_a_sudden_stop():
    seq = [(t, box(0.2 + 0.25 * min(t, 1.5), 0.7, 0.1, 0.1)) for t in times(3.0)]   # 0.25 widths/s, then still
    tr = clip_tracks(objects({1: ("car", seq)}, 3.0))[0]
    assert stop_scores(tr).max() > 0.5
    cruise = [(t, box(0.2 + 0.2 * t, 0.7, 0.1, 0.1)) for t in times(3.0)]
    assert stop_scores(clip_tracks(objects({1: ("car", cruise)}, 3.0))[0]).max() == 0


# --- the ego's response, from a synthetic flow field ---------------------------------------------------

def forward_flow(rate: float, h=72, w=128, pitch_px=0.0) -> torch.Tensor:
    """The flow of a camera moving forward over a textured world: expansion from the centre at `rate`
    (per frame step), plus a vertical shift (pitch)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return torch.stack([(xs - w / 2) * rate, (ys - h / 2) * rate + pitch_px]).unsqueeze(0)


def test_hard_braking_from_the_flow_field_is_an_ego_response():
    dt = 0.25
    t = np.arange(32) * dt
    rates = np.where(t < 4.0, 0.05, np.where(t < 4.5, 0.01, 0.0))   # cruising, then a stop within half a second
    ego = [ego_motion(forward_flow(r), torch.full((1, 1, 1, 1), dt)) for r in rates]
    speed = np.array([float(e[1]) for e in ego])
    assert speed[:10] == pytest.approx(2 * 0.05 / dt, rel=0.05)   # the proxy is the expansion rate
    assert abs(speed[-5:]).max() < 0.02
    cues = ego_cues(t, speed, np.zeros_like(t), np.zeros_like(t))
    assert cues.brake.max() > 0.9 and 3.0 <= t[np.argmax(cues.brake)] <= 4.5
    steady = ego_cues(t, np.full_like(t, speed[0]), np.zeros_like(t), np.zeros_like(t))
    assert steady.score.max() == 0


def test_a_camera_shock_and_a_swerve_are_ego_responses():
    dt = 0.25
    t = np.arange(32) * dt
    pitch_px = np.where(np.abs(t - 4.0) < 0.1, 60.0, 0.0)   # one jolt
    pitch = np.array([float(ego_motion(forward_flow(0.03, pitch_px=p), torch.full((1, 1, 1, 1), dt))[3])
                      for p in pitch_px])
    yaw = np.where(np.abs(t - 6.0) < 0.2, 0.8, 0.02)
    cues = ego_cues(t, np.full_like(t, 0.5), yaw, pitch)
    assert cues.shock.max() == 1.0 and t[np.argmax(cues.shock)] == 4.0
    assert cues.swerve.max() == 1.0 and abs(t[np.argmax(cues.swerve)] - 6.0) < 0.3


# --- riders -------------------------------------------------------------------------------------------

def test_riders_take_their_vehicle_class_and_walkers_stay_pedestrians():
    person = [(t, box(0.3 + 0.15 * t, 0.7, 0.04, 0.12)) for t in times(2.0)]
    bike = [(t, box(0.3 + 0.15 * t, 0.75, 0.06, 0.07)) for t in times(2.0)]
    o = objects({1: ("person", person), 2: ("bicycle", bike)}, 2.0)
    tracks = clip_tracks(o)
    assert {t.track_id: t.cls for t in tracks}[1] == "bicycle"
    # no two-wheeler box, but crossing at 0.5 widths/s = 7 own heights/s: a motorcyclist, not a pedestrian
    fast = clip_tracks(objects({1: ("person", [(t, box(0.1 + 0.5 * t, 0.7, 0.04, 0.12)) for t in times(1.5)])}, 1.5))
    assert fast[0].cls == "vehicle"
    # standing boxes (2.7 times as tall as wide in pixels); a seated one (1.2) is a rider without its vehicle box
    walker = clip_tracks(objects({1: ("person", [(t, box(0.3 + 0.03 * t, 0.7, 0.025, 0.12)) for t in times(2.0)])},
                                 2.0))
    assert walker[0].cls == "pedestrian"
    sitting = clip_tracks(objects({1: ("person", [(t, box(0.3, 0.7, 0.056, 0.12)) for t in times(2.0)])}, 2.0))
    assert sitting[0].cls == "vehicle"
    # the scene turning (ego yaw) is not the person's own speed
    turning = [(t, box(0.8 - 0.4 * t, 0.7, 0.025, 0.12)) for t in times(1.5)]
    tr = clip_tracks(objects({1: ("person", turning)}, 1.5))[0]
    assert rider_class(tr, [tr], RiderSpec(), yaw=np.full(len(tr.t_s), 0.4)) is None


# --- calibration ---------------------------------------------------------------------------------------

def test_the_alarm_level_keeps_normal_driving_within_the_budget():
    rng = np.random.default_rng(0)
    clips = [(np.arange(100) / 10, rng.beta(2, 8, 100)) for _ in range(60)]   # 10 minutes of negatives
    cal = calibrate(clips, alarms_per_hour=6)
    assert cal.threshold > max(s.max() for _, s in clips) * 0.7
    assert cal.observed_per_hour <= 6 * 2
    lo, hi = cal.observed_interval
    assert lo <= cal.observed_per_hour <= hi
    strict = calibrate(clips, alarms_per_hour=0.5)
    assert strict.threshold > cal.threshold and strict.observed_alarms == 0
    assert calibrate([], 2).method.startswith("uncalibrated")


def test_window_maxima_and_the_poisson_interval():
    t = np.arange(250) / 10          # 25 s: two windows of about 12.5 s
    s = np.zeros(250)
    s[30], s[200] = 0.4, 0.9
    assert window_maxima(t, s) == [0.4, 0.9]
    lo, hi = poisson_interval(0, 1.0)
    assert lo == 0 and hi == pytest.approx(3.69, abs=0.01)


# --- the head -------------------------------------------------------------------------------------------

def _seqs(objs: list[ClipObjects], seconds: float) -> Sequences:
    t, m = quiet_motion(seconds)
    motion = np.concatenate([m, np.zeros((len(t), 96 * len(MOTION_GRIDS)), np.float32)], 1)
    n = len(t)
    return Sequences([f"c{i}" for i in range(len(objs))], np.arange(len(objs) + 1) * n, np.tile(t, len(objs)),
                     np.zeros((n * len(objs), 0), np.float32), None, np.tile(motion, (len(objs), 1)), objects=objs)


def test_the_head_flags_an_approaching_car_with_its_track_and_stays_quiet_on_following():
    crash = objects({7: ("car", approach(4.0, 30.0, 8.0, start=1.0)), 3: ("car", jittery_follow(4.0, cx=0.2))}, 4.0)
    calm = objects({3: ("car", jittery_follow(4.0))}, 4.0)
    seqs = _seqs([crash, calm], 4.0)
    head = ConflictHead()
    p_crash, p_calm = head.predict(seqs)
    assert p_crash.predicted_class == "vehicle" and p_crash.incidents
    assert p_crash.incidents[0].parties == (7,)
    # why it alarmed: the ego time-to-collision cue, with that road user and a TTC the approach explains
    inc = p_crash.incidents[0]
    assert inc.cue == "ego_ttc" and "road user #7 (vehicle)" in inc.why, inc.why
    ttc = float(inc.why.split("time to collision ")[1].split(" s")[0])
    assert 0.0 < ttc < ConflictHead().cfg.ttc_safe_s
    assert p_calm.predicted_class == "background" and not p_calm.incidents
    assert p_crash.near_miss_score > p_calm.near_miss_score
    cues = head.cues(seqs)[0]
    assert cues.scores[:, CUES.index("ego_ttc")].max() > 0.5
    again = head_from_payload(head.payload())
    assert again.predict(seqs)[0].incidents == p_crash.incidents


def test_fit_sets_the_alarm_level_from_normal_driving_only():
    calm = [objects({3: ("car", jittery_follow(10.0))}, 10.0) for _ in range(6)]
    crash = objects({7: ("car", approach(10.0, 40.0, 8.0, start=5.0))}, 10.0)
    seqs = _seqs(calm + [crash], 10.0)
    labels = [ClipLabel("background")] * 6 + [ClipLabel("vehicle", 8.0, 9.9)]

    class Data:
        train, train_labels, val, val_labels = seqs, labels, _seqs([], 10.0), []

        class spec:
            alarms_per_hour = 2.0

        @staticmethod
        def fixed(head):
            return head

    head, params = ConflictHead.fit("conflict", Data)
    assert params["alarm_level"]["negatives"] == 6 and params["alarm_level"]["minutes"] == pytest.approx(1.0, 0.05)
    assert head.cfg.threshold == params["alarm_level"]["threshold"] >= 0.3
    preds = head.predict(seqs)
    assert all(p.predicted_class == "background" for p in preds[:6])


def test_clip_cues_need_no_motion_rows():
    o = objects({1: ("car", jittery_follow(2.0))}, 2.0)
    c = clip_cues(o, np.zeros(0), np.zeros((0, len(MOTION_SCALARS))), ConflictHead().cfg)
    assert c.scores.shape == (len(o.step_t_s), len(CUES)) and c.scores[:, CUES.index("ego_response")].max() == 0


def test_kinematics_spec_window_is_trailing():
    """An alarm never waits for the future: the rate at a box depends on earlier boxes only."""
    seq = approach(3.0, 30.0, 10.0)
    t, b = np.array([s[0] for s in seq]), np.array([s[1] for s in seq])
    whole = track_kinematics(t, b, KinematicsSpec())
    cut = track_kinematics(t[:15], b[:15], KinematicsSpec())
    assert np.allclose(whole.rate[:15], cut.rate, equal_nan=True)


def _cue_clip(rng, n: int, decisive: float, noise_top: float):
    """A clip's per-frame cues at 10 fps: the ego_response cue at `decisive`, the others random up to noise_top."""
    t = np.arange(n) / 10.0
    scores = rng.uniform(0, noise_top, (n, len(CUES)))
    scores[:, CUES.index("ego_response")] = decisive + rng.uniform(-0.05, 0.05, n)
    return ClipCues(t, np.clip(scores, 0, 1), np.full((n, len(CUES), 2), -1), np.zeros((n, len(CUES)), int))


def test_a_learnt_fusion_beats_the_fixed_weights_where_one_cue_decides():
    """On a fleet where only the ego's response tells near-misses apart (the other cues fire as often on
    normal driving), the fusion learnt from labelled clips ranks the events above normal driving; the fixed
    weights, which trust ego_ttc most, do not. With too few labelled clips the fixed weights stay."""
    from models.cue_fusion import FusionSpec
    from models.metrics import roc_auc

    rng = np.random.default_rng(1)
    train = [_cue_clip(rng, 50, 0.6, 0.5) for _ in range(5)] + [_cue_clip(rng, 50, 0.05, 0.9) for _ in range(8)]
    labels = [ClipLabel("vehicle", 1.0, 4.0)] * 5 + [ClipLabel("background")] * 8
    head = ConflictHead()
    fusion = head.learn_fusion(train, labels)
    assert fusion is not None and fusion.positives == 5 * 31 and fusion.negatives == 8 * 50
    weights = dict(zip(CUES, fusion.weights))
    assert weights["ego_response"] == max(weights.values()) > 0 and min(weights.values()) >= 0   # monotone
    test = [_cue_clip(rng, 50, 0.6, 0.5) for _ in range(5)] + [_cue_clip(rng, 50, 0.05, 0.9) for _ in range(8)]
    truth = np.array([1] * 5 + [0] * 8)
    fixed = [head.fuse(c).max() for c in test]
    learnt_head = head.with_fusion(fusion)
    learnt = [learnt_head.fuse(c).max() for c in test]
    assert roc_auc(np.array(learnt), truth == 1) == 1.0 > roc_auc(np.array(fixed), truth == 1) + 0.3
    assert learnt_head.fuse(ClipCues(np.arange(5) / 10.0, np.zeros((5, len(CUES))), np.full((5, len(CUES), 2), -1),
                                     np.zeros((5, len(CUES)), int))).max() == 0.0       # no cue, no score
    # stored and read back: the same scores, without scikit-learn in the loop
    again = ConflictHead.from_payload(learnt_head.payload())
    assert np.allclose(again.fuse(test[0]), learnt_head.fuse(test[0]))
    # two labelled near-miss clips are too few to learn from
    assert head.learn_fusion(train[:2] + train[5:], labels[:2] + labels[5:]) is None
    assert FusionSpec().min_positive_clips == 3


def test_cues_over_processes_and_in_chunks_are_the_cues_of_one_clip_at_a_time(monkeypatch):
    """A fleet's re-scoring batches the clips' cues in chunks and spreads the chunks over processes
    (models/clip_map.py): the same numbers as each clip alone, in order."""
    from models import clip_map
    from models.conflict import clip_cues

    crash = objects({7: ("car", approach(4.0, 30.0, 8.0, start=1.0)), 3: ("car", jittery_follow(4.0, cx=0.2))}, 4.0)
    calm = objects({3: ("car", jittery_follow(4.0))}, 4.0)
    seqs = _seqs([crash, calm, calm, crash, calm], 4.0)
    alone = [clip_cues(o, seqs.times[seqs.frames(i)].astype(np.float64), seqs.motion[seqs.frames(i)],
                       ConflictHead().cfg) for i, o in enumerate(seqs.objects)]
    serial = ConflictHead().cues(seqs)
    monkeypatch.setenv("NEARMISS_SCORE_WORKERS", "2")
    calls, chunks = [], []
    real = clip_map.map_chunks

    def spy(fn, items, weight, budget, **packing):
        calls.append(len(items))
        chunks.extend(clip_map.chunked(items, weight, 2 * weight(items[0])))
        return real(fn, items, weight, 2 * weight(items[0]), min_clips=2, **packing)

    serial_predictions = ConflictHead().predict(seqs)
    monkeypatch.setattr("models.conflict.map_chunks", spy)
    spread = ConflictHead().cues(seqs)
    assert calls == [5] and len(spread) == len(serial) == len(alone) and 1 < len(chunks) < 5
    # predictions are made where the cues are, the clips packed into a few arrays on the way (same numbers)
    spread_predictions = ConflictHead().predict(seqs)
    assert calls == [5, 5] and [p.clip_id for p in spread_predictions] == list(seqs.clip_ids)
    for a, b in zip(serial_predictions, spread_predictions):
        assert a.near_miss_score == b.near_miss_score and np.array_equal(a.step_scores, b.step_scores)
        same = lambda p: [(i.peak_s, i.cls, i.parties) for i in p.incidents]  # noqa: E731
        assert same(a) == same(b)
    assert any(p.incidents for p in serial_predictions)
    assert any(c.scores.max() > 0.5 for c in alone) and any(c.scores.max() == 0 for c in alone)
    for a, b, c in zip(alone, serial, spread):
        for x in (b, c):
            assert np.array_equal(a.scores, x.scores) and np.array_equal(a.parties, x.parties)
            assert np.array_equal(a.ttc_s, x.ttc_s) and np.array_equal(a.classes, x.classes)
    import os
    assert os.getpid() not in set(real(lambda chunk: [os.getpid() for _ in chunk], [()] * 4, min_clips=2))


def test_clips_packed_for_another_process_come_back_the_same():
    """pack_objects: many clips' road users as a few long arrays (what a process pool pickles fast) and back, a
    clip without the detector's labels and a clip without road users included."""
    from dataclasses import fields, replace as with_

    from contracts.sequences import pack_objects, unpack_objects

    crash = objects({7: ("car", approach(4.0, 30.0, 8.0, start=1.0)), 3: ("person", jittery_follow(4.0, cx=0.2))}, 4.0)
    clips = [crash, with_(objects({3: ("car", jittery_follow(2.0))}, 2.0), coco=None, aspect=4 / 3),
             objects({}, 1.0), crash]
    back = unpack_objects(pack_objects(clips))
    assert len(back) == len(clips)
    for a, b in zip(clips, back):
        for f in fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            assert (x is None and y is None) or np.array_equal(np.asarray(x), np.asarray(y)), f.name
    assert back[1].coco is None and back[1].aspect == 4 / 3 and len(back[2].t_s) == 0


def test_each_frames_strongest_road_user_is_the_one_tracks_taken_in_turn_would_keep():
    """clips_cues picks, at every frame, the track with the largest positive cue value in one pass over all tracks'
    rows; taken a track at a time (each replacing only a smaller value), the same rows win, ties and NaN included."""
    from models.conflict import _strongest

    rng = np.random.default_rng(3)
    for _ in range(200):
        n_tracks, frames = rng.integers(1, 6), rng.integers(1, 12)
        steps = [np.sort(rng.choice(frames, rng.integers(1, frames + 1), replace=False)) for _ in range(n_tracks)]
        values = [rng.choice([0.0, 0.3, 0.7, 1.0, np.nan, -0.2], len(s)) for s in steps]
        best, who = np.zeros(frames), np.full(frames, -1)
        for k, (s, v) in enumerate(zip(steps, values)):   # the tracks in turn
            better = v > best[s]
            best[s[better]], who[s[better]] = v[better], k
        step, owner = np.concatenate(steps), np.repeat(np.arange(n_tracks), [len(s) for s in steps])
        rows = _strongest(step, np.concatenate(values), owner)
        got = np.full(frames, -1)
        got[step[rows]] = owner[rows]
        assert np.array_equal(got, who)
