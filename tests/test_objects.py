"""Tracks, time-to-collision and the ego path on synthetic boxes whose motion is known; the ttc head."""
import numpy as np
import pytest

from models.head_registry import head_from_payload
from models.heads import get_head, list_heads
from models.metrics import roc_auc
from contracts.sequences import ClipObjects, Sequences
from models.ttc import TTCHead
from pipeline.detect import Detections
from pipeline.objects import ObjectsSpec, frame_summary, track_objects

SPEC = ObjectsSpec(detector="test")
FPS = 10.0


def approaching(z0: float, speed: float, seconds: float, cx: float = 0.5, coco: str = "car",
                width_at_1m: float = 0.6, aspect: float = 0.8):
    """A road user at distance z0 (m) closing at `speed` (m/s; negative: receding), seen by a pinhole
    camera: its image width is width_at_1m / z. Returns detections per frame and their times."""
    times = np.arange(int(seconds * FPS)) / FPS
    dets = []
    for t in times:
        w = width_at_1m / (z0 - speed * t)
        h = w * aspect
        box = np.array([[cx - w / 2, 0.55 - h / 2, cx + w / 2, 0.55 + h / 2]], np.float32)
        dets.append(Detections(np.clip(box, 0, 1), np.array([0.9], np.float32), [coco]))
    return dets, times


def test_ttc_of_an_approaching_object_is_distance_over_speed():
    z0, v = 20.0, 8.0   # 20 m away, closing at 8 m/s: TTC 2.5 s at the start, 1.25 s after 1.25 s
    dets, times = approaching(z0, v, 1.5)
    o = track_objects(dets, times, SPEC)
    assert len(set(o.track_id)) == 1 and len(o) == len(times)
    inner = (o.t_s >= 0.5) & (o.t_s <= 1.0)     # the window is whole here
    expected = (z0 - v * o.t_s[inner]) / v
    assert np.allclose(o.ttc_s[inner], expected, rtol=0.08)
    assert o.cls[0] == "vehicle" and o.in_path.all()


def test_a_receding_or_steady_object_has_no_ttc():
    for speed in (-5.0, 0.0):
        dets, times = approaching(15.0, speed, 1.5)
        o = track_objects(dets, times, SPEC)
        assert np.isinf(o.ttc_s).all()


def test_ego_path_beside_and_entering():
    beside, times = approaching(10.0, 0.0, 1.0, cx=0.12)
    o = track_objects(beside, times, SPEC)
    assert not o.in_path.any() and not o.entering.any()
    # A pedestrian stepping from the kerb towards the centre of the path.
    dets = []
    for k, t in enumerate(times):
        cx = 0.15 + 0.25 * t
        dets.append(Detections(np.array([[cx - 0.03, 0.45, cx + 0.03, 0.75]], np.float32),
                               np.array([0.8], np.float32), ["person"]))
    o = track_objects(dets, times, SPEC)
    assert o.cls[0] == "pedestrian"
    assert o.entering[(o.t_s > 0.3) & ~o.in_path].all() and o.in_path[-1]


def test_a_person_on_a_bicycle_is_a_cyclist():
    times = np.arange(8) / FPS
    dets = [Detections(np.array([[0.40, 0.30, 0.50, 0.62], [0.38, 0.45, 0.52, 0.70]], np.float32),
                       np.array([0.8, 0.7], np.float32), ["person", "bicycle"]) for _ in times]
    o = track_objects(dets, times, SPEC)
    assert set(o.cls) == {"bicycle"}
    assert set(o.coco) == {"person", "bicycle"}   # the detector's own class is kept


def test_frame_summary_reports_growth_in_the_path():
    dets, times = approaching(12.0, 8.0, 1.0)
    o = track_objects(dets, times, SPEC)
    s = frame_summary(o, np.array([0.5]))
    assert s[0, 2] == pytest.approx(8.0 / (12.0 - 8.0 * 0.5), rel=0.1)   # vehicle: 1 / TTC
    assert s[0, 0] == 0 and s[0, 1] == 0 and s[0, 6] == 1


def _sequences(tracks) -> Sequences:
    objs = []
    for o in tracks:
        objs.append(ClipObjects(np.arange(o.frames) / FPS, o.t_s, o.track_id, np.asarray(o.cls), o.score, o.ttc_s,
                                o.path_gap, o.in_path, o.entering, o.boxes))
    n = len(tracks)
    return Sequences([f"c{i}" for i in range(n)], np.zeros(n + 1, np.int64), np.zeros(0), np.zeros((0, 0)),
                     None, np.zeros((0, 0)), objects=objs)


def test_ttc_head_alarms_on_a_close_approach_and_not_on_steady_traffic():
    near = track_objects(*approaching(6.0, 5.0, 1.0, coco="person", aspect=2.5), SPEC)   # TTC 1.2 -> 0.2 s
    steady = track_objects(*approaching(6.0, 0.0, 1.0), SPEC)
    far = track_objects(*approaching(60.0, 5.0, 1.0), SPEC)                             # TTC 12 s, tiny box
    preds = TTCHead().predict(_sequences([near, steady, far]))
    assert preds[0].predicted_class == "pedestrian" and preds[0].near_miss_score > 0.5
    assert preds[0].incidents and preds[0].incidents[0].cls == "pedestrian"
    for p in preds[1:]:
        assert p.predicted_class == "background" and p.near_miss_score == 0 and not p.incidents
    aucs = roc_auc([p.near_miss_score for p in preds], [True, False, False])
    assert aucs == 1.0


def test_every_registered_head_is_declared_once_and_ttc_round_trips():
    assert {"recognition", "detection", "motion3d", "fusion", "zeroshot", "ttc"} <= set(list_heads())
    info = get_head("ttc")
    assert info.needs == {"objects"} and not info.trainable
    head = TTCHead()
    again = head_from_payload(head.payload())
    assert again.payload() == head.payload()
    with pytest.raises(ValueError, match="choose one of"):
        get_head("nope")


def test_roc_auc():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.1, 0.9, 0.8], [True, False, False]) == 0.0
    assert roc_auc([1.0], [True]) is None


def test_darknet_parse_keeps_exactly_the_rows_a_full_scan_keeps():
    """The parser looks only at rows that can reach min_score; that must not change a single detection."""
    from pathlib import Path

    from pipeline.detect import COCO_TO_CLASS, DarknetDetector
    from pipeline.detections import nms_keep

    yolo = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "yolo_fastest"
    if not yolo.exists():
        pytest.skip("needs ../shared/models/yolo_fastest")
    det = DarknetDetector(yolo / "yolo-fastest-1.1-xl.cfg", yolo / "yolo-fastest-1.1-xl.weights", min_score=0.3)
    rng = np.random.default_rng(0)
    rows = np.zeros((1500, 85), np.float32)
    rows[:, :2], rows[:, 2:4] = rng.uniform(0, 1, (1500, 2)), rng.uniform(0.01, 0.4, (1500, 2))
    rows[:, 4] = rng.uniform(0, 1, 1500) ** 3
    rows[:, 5:] = np.where(rng.uniform(0, 1, (1500, 80)) > 0.97, rng.uniform(0.2, 1, (1500, 80)), 0) * rows[:, 4:5]

    probs = rows[:, 5:] * rows[:, 4:5]  # the full scan: every row's best class, then the cuts
    cls = probs.argmax(1)
    score = probs[np.arange(len(rows)), cls]
    names = np.array(det.classes)[cls]
    ok = (score >= det.min_score) & np.isin(names, list(COCO_TO_CLASS))
    cx, cy, w, h = rows[ok, :4].T
    boxes = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), 0, 1).astype(np.float32)
    kept = sorted((tuple(np.round(boxes[i], 6)), names[ok][i]) for c in np.unique(names[ok])
                  for i in np.flatnonzero(names[ok] == c)[nms_keep(boxes[names[ok] == c], score[ok][names[ok] == c],
                                                                     det.nms_iou)])
    got = det.parse(rows)
    assert len(got) > 5
    assert sorted((tuple(np.round(b, 6)), n) for b, n in zip(got.boxes, got.coco)) == kept
