"""Evaluation measures and event extraction against cases worked out by hand."""
import numpy as np
import pytest

from models import metrics as M
from models.evaluation import evaluate
from models.events import EventSpec, extract_events, nms, smooth, tiou
from contracts.predictions import ClipPrediction, Incident
from contracts.sequences import ClipLabel


def test_confusion_matrix_and_per_class_scores():
    y_true = [0, 0, 1, 1, 2, 3, 3, 3]
    y_pred = [0, 1, 1, 1, 3, 3, 3, 0]
    cm = M.confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1], [1, 0, 0, 2]]
    p, r, f1 = M.precision_recall_f1(cm)
    assert p == pytest.approx([1 / 2, 2 / 3, 0.0, 2 / 3])
    assert r == pytest.approx([1 / 2, 1.0, 0.0, 2 / 3])
    assert f1 == pytest.approx([0.5, 0.8, 0.0, 2 / 3])


def test_average_precision_hand_computed():
    # precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3 of 3 positives: 1/3 * 1 + 1/3 * 2/3
    assert M.average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 3) == pytest.approx(5 / 9)
    assert M.average_precision([0.9, 0.1], [1, 1], 2) == pytest.approx(1.0)
    assert M.average_precision([], [], 2) == 0.0


def test_tiou():
    assert tiou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert tiou((0, 1), (2, 3)) == 0.0
    assert tiou((1, 2), (1, 2)) == 1.0


def test_event_matching_f1_and_temporal_ap():
    E = M.Event
    pred = [E("a", 0, 2, 0.9, 1.0), E("a", 5, 6, 0.5), E("b", 1, 2, 0.8)]
    truth = [E("a", 0.5, 2, peak_s=1.5), E("b", 3, 4)]
    f = M.event_f1(pred, truth, 0.5)
    assert (f["tp"], f["precision"], f["recall"]) == (1, pytest.approx(1 / 3), 0.5)
    assert f["f1"] == pytest.approx(0.4)
    assert M.temporal_ap(pred, truth, 0.5) == pytest.approx(0.5)   # one hit at rank 1, half the events found
    assert M.temporal_ap(pred, truth, 0.8) == 0.0                  # tIoU 0.75 is not enough at 0.8
    assert M.peak_mae(pred, truth, 0.5) == pytest.approx(0.5)


def test_anticipation_hand_computed():
    clips = [
        (np.array([0, 1, 2, 3.0]), np.array([0.1, 0.6, 0.9, 0.9]), 2.0),   # pre-event max 0.6, first at t=1 or 0
        (np.array([0, 1, 2.0]), np.array([0.3, 0.2, 0.95]), 1.5),          # pre-event max 0.3 at t=0
        (np.array([0, 1.0]), np.array([0.2, 0.5]), None),                   # negative, peaks at 0.5
    ]
    a = M.anticipation(clips)
    # Thresholds 0.3 / 0.5 / 0.6: (P, R, TTA) = (2/3, 1, 1.25), (1/2, 1/2, 1), (1, 1/2, 1).
    assert a["ap"] == pytest.approx(0.5 * 1 + (1 + 2 / 3) * 0.5 / 2)
    assert a["mtta_s"] == pytest.approx((1.0 + 1.25) / 2)
    assert a["tta_r80_s"] == pytest.approx(1.25)


def test_extract_events_edges_class_and_merging():
    t = np.arange(10.0)
    s = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 0.0])
    probs = np.tile([0.0, 0.0, 0.0, 1.0], (10, 1))
    probs[3:6] = [0.1, 0.8, 0.1, 0.0]
    (e,) = extract_events(t, s, probs, EventSpec(threshold=0.5, smooth=1))
    assert (e.start_s, e.peak_s, e.end_s, e.score, e.cls) == (2.5, 3.0, 5.5, 1.0, "pedestrian")
    two = np.array([0, 1, 0, 1, 0, 0, 0, 0, 0, 0.0])
    assert len(extract_events(t, two, None, EventSpec(smooth=1, merge_gap_s=0.5))) == 2
    (merged,) = extract_events(t, two, None, EventSpec(smooth=1, merge_gap_s=2.0))
    assert (merged.start_s, merged.end_s, merged.cls) == (0.5, 3.5, "unknown")
    assert extract_events(t, np.zeros(10), None) == []
    assert smooth(np.array([0, 0, 4.0, 0, 0]), 3).tolist() == [0, 1, 2, 1, 0]


def test_nms_keeps_the_best_of_overlapping_events():
    events = [Incident(0, 1, 2, 0.5, "vehicle"), Incident(0.2, 1, 2.1, 0.9, "vehicle"), Incident(5, 6, 7, 0.4, "bicycle")]
    assert [e.score for e in nms(events, 0.5)] == [0.9, 0.4]


def test_evaluate_puts_the_measures_together():
    labels = [ClipLabel("vehicle", 1.0, 2.0, 1.5), ClipLabel("background")]
    t = np.array([0, 0.5, 1, 1.5, 2, 2.5], np.float32)
    preds = [ClipPrediction("a", np.array([0, 0, 0.9, 0.1]), 0.9, t, np.array([0, 0, 0.9, 0.9, 0.9, 0], np.float32),
                            [Incident(1.0, 1.5, 2.0, 0.9, "vehicle")]),
             ClipPrediction("b", np.array([0.1, 0, 0, 0.9]), 0.1, t, np.zeros(6, np.float32), [])]
    m = evaluate(preds, labels)
    assert m["recognition_accuracy"] == 1.0 and m["detection_accuracy"] == 1.0
    assert m["temporal"]["event_f1@0.5"]["f1"] == 1.0 and m["temporal"]["peak_mae_s"] == 0.0
    assert m["confusion_matrix"]["rows_true_cols_predicted"][2][2] == 1
    assert m["per_class"]["bicycle"]["support"] == 0 and m["anticipation"]["ap"] == 0.0  # no alarm before t=1
