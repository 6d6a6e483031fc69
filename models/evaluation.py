"""Every evaluation measure for one head on one set of labelled clips, as a plain dict."""
from __future__ import annotations

import numpy as np

from models import metrics as M
from contracts.predictions import ClipPrediction
from contracts.sequences import CLASS_INDEX, ClipLabel
from contracts.taxonomy import CLASSES


def _events(preds: list[ClipPrediction]) -> list[M.Event]:
    return [M.Event(p.clip_id, e.start_s, e.end_s, e.score, e.peak_s) for p in preds for e in (p.incidents or [])]


def _truth(preds: list[ClipPrediction], labels: list[ClipLabel]) -> list[M.Event]:
    return [M.Event(p.clip_id, lab.event_start_s, lab.event_end_s, 1.0, lab.event_peak_s)
            for p, lab in zip(preds, labels) if lab.event is not None]


def evaluate(preds: list[ClipPrediction], labels: list[ClipLabel]) -> dict:
    if len(preds) != len(labels):
        raise ValueError("one label per prediction")
    if not preds:
        raise ValueError("nothing to evaluate: no labelled clips with predictions in this split")
    y = np.array([CLASS_INDEX[lab.cls] for lab in labels])
    y_hat = np.array([CLASS_INDEX[p.predicted_class] for p in preds])
    cm = M.confusion_matrix(y, y_hat, len(CLASSES))
    precision, recall, f1 = M.precision_recall_f1(cm)
    near_true = y != CLASS_INDEX["background"]
    near_pred = np.array([p.near_miss_score >= 0.5 for p in preds])
    out: dict = {
        "clips": len(preds),
        "recognition_accuracy": float((y == y_hat).mean()),
        "detection_accuracy": float((near_true == near_pred).mean()),
        "near_miss_ap": M.average_precision([p.near_miss_score for p in preds], near_true, int(near_true.sum())),
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(cm[i].sum())} for i, c in enumerate(CLASSES)},
        "confusion_matrix": {"classes": list(CLASSES), "rows_true_cols_predicted": cm.tolist()},
    }
    has_steps = any(p.step_scores is not None for p in preds)
    if has_steps:
        pred_events, true_events = _events(preds), _truth(preds, labels)
        out["temporal"] = {
            f"ap@{t}": M.temporal_ap(pred_events, true_events, t) for t in (0.3, 0.5)}
        out["temporal"]["event_f1@0.5"] = M.event_f1(pred_events, true_events, 0.5)
        out["temporal"]["event_f1@0.3"] = M.event_f1(pred_events, true_events, 0.3)
        out["temporal"]["peak_mae_s"] = M.peak_mae(pred_events, true_events, 0.3)
        out["anticipation"] = M.anticipation([
            (p.step_t_s, p.step_scores, lab.event_start_s if lab.is_near_miss else None)
            for p, lab in zip(preds, labels)
            if p.step_scores is not None and (not lab.is_near_miss or lab.event is not None)])
    return _finite(out)


def _finite(x):
    """JSON has no NaN: undefined measures become null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _finite(x.item())
    return x


METRIC_NAMES = {  # what a person reads for each key of summary_line
    "recognition_acc": "4-class accuracy", "detection_acc": "near-miss vs background accuracy",
    "event_f1@0.5": "event F1 (tIoU 0.5)", "ap@0.5": "event AP (tIoU 0.5)", "ap@0.3": "event AP (tIoU 0.3)",
    "peak_mae_s": "peak-time error (s)", "video_ap": "video AP (anticipation)",
    "mtta_s": "mean time-to-accident (s)", "tta_r80_s": "time-to-accident at 80% recall (s)"}
PROPORTIONS = ("recognition_acc", "detection_acc")   # shares of clips: shown with their interval


def wilson_interval(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion over n clips."""
    if n <= 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((share * (1 - share) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summary_line(m: dict) -> dict:
    """The handful of numbers a table shows."""
    t = m.get("temporal", {})
    a = m.get("anticipation", {})
    return {"recognition_acc": m["recognition_accuracy"], "detection_acc": m["detection_accuracy"],
            "event_f1@0.5": t.get("event_f1@0.5", {}).get("f1"), "ap@0.5": t.get("ap@0.5"),
            "ap@0.3": t.get("ap@0.3"), "peak_mae_s": t.get("peak_mae_s"), "video_ap": a.get("ap"),
            "mtta_s": a.get("mtta_s"), "tta_r80_s": a.get("tta_r80_s")}
