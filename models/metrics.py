"""Evaluation measures: NIDB's recognition and detection accuracy, per-class P/R/F1,
temporal event AP and F1 at a tIoU, peak-time error, and the dashcam-accident
anticipation measures (video-level AP, mTTA, TTA at 80% recall) as the DAD
evaluation code computes them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.events import tiou


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Rows are the true class, columns the predicted one."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def average_precision(scores, is_tp, n_positives: int) -> float:
    """Area under the precision envelope (VOC/ActivityNet style), detections ranked by score."""
    if n_positives == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    tp = np.asarray(is_tp, float)[order]
    if len(tp) == 0:
        return 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_positives
    precision = ctp / (ctp + cfp)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx]))


@dataclass(frozen=True)
class Event:
    clip_id: str
    start_s: float
    end_s: float
    score: float = 1.0
    peak_s: float | None = None


def match_events(pred: list[Event], truth: list[Event], min_tiou: float) -> list[tuple[Event, Event | None]]:
    """Greedy by score: each prediction takes the unmatched true event of its clip with the best tIoU >= min_tiou."""
    by_clip: dict[str, list[Event]] = {}
    for t in truth:
        by_clip.setdefault(t.clip_id, []).append(t)
    used: set[int] = set()
    out = []
    for p in sorted(pred, key=lambda e: -e.score):
        best, best_iou = None, min_tiou
        for t in by_clip.get(p.clip_id, []):
            if id(t) in used:
                continue
            iou = tiou((p.start_s, p.end_s), (t.start_s, t.end_s))
            if iou >= best_iou:
                best, best_iou = t, iou
        if best is not None:
            used.add(id(best))
        out.append((p, best))
    return out


def temporal_ap(pred: list[Event], truth: list[Event], min_tiou: float) -> float:
    matched = match_events(pred, truth, min_tiou)
    return average_precision([p.score for p, _ in matched], [t is not None for _, t in matched], len(truth))


def event_f1(pred: list[Event], truth: list[Event], min_tiou: float) -> dict:
    tp = sum(t is not None for _, t in match_events(pred, truth, min_tiou))
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "predicted": len(pred), "true": len(truth)}


def peak_mae(pred: list[Event], truth: list[Event], min_tiou: float) -> float | None:
    """Mean |predicted peak - true peak| over matched events (true peak: labelled, else the event's middle)."""
    errors = []
    for p, t in match_events(pred, truth, min_tiou):
        if t is not None and p.peak_s is not None:
            true_peak = t.peak_s if t.peak_s is not None else 0.5 * (t.start_s + t.end_s)
            errors.append(abs(p.peak_s - true_peak))
    return float(np.mean(errors)) if errors else None


def anticipation(clips: list[tuple[np.ndarray, np.ndarray, float | None]]) -> dict:
    """Video-level AP, mTTA and TTA@R80 as in the DAD evaluation code.

    clips: (times, scores, event_start_s or None for negatives). A positive is
    detected at threshold th if its score reaches th before the event starts;
    its time-to-accident is event start minus the first such time. A negative
    counts as a false alarm if its score reaches th anywhere.
    """
    first: list[tuple[np.ndarray, np.ndarray]] = []   # (times, scores) that count, per clip
    positive = []
    for times, scores, start in clips:
        times, scores = np.asarray(times, float), np.asarray(scores, float)
        if start is not None:
            keep = times < start
            times, scores = times[keep], scores[keep]
        first.append((times, scores))
        positive.append(start is not None)
    positive = np.array(positive)
    n_pos = int(positive.sum())
    peak = np.array([s.max() if len(s) else -np.inf for _, s in first])
    if n_pos == 0:
        return {"ap": None, "mtta_s": None, "tta_r80_s": None}
    starts = [c[2] for c in clips]
    precision, recall, tta = [], [], []
    for th in np.unique(peak[np.isfinite(peak) & (peak > 0)]):  # a score of 0 is never an alarm
        hit = peak >= th
        tp = hit & positive
        if tp.sum() < 1:
            continue
        precision.append(tp.sum() / hit.sum())
        recall.append(tp.sum() / n_pos)
        lead = [starts[i] - first[i][0][np.argmax(first[i][1] >= th)] for i in np.flatnonzero(tp)]
        tta.append(float(np.mean(lead)))
    if not recall:
        return {"ap": 0.0, "mtta_s": 0.0, "tta_r80_s": 0.0}
    precision, recall, tta = map(np.array, (precision, recall, tta))
    order = np.argsort(recall, kind="stable")
    precision, recall, tta = precision[order], recall[order], tta[order]
    levels, first_idx = np.unique(recall, return_index=True)
    bounds = list(first_idx) + [len(recall)]
    p = np.array([precision[bounds[k]:bounds[k + 1]].max() for k in range(len(levels))])
    t = np.array([tta[bounds[k]:bounds[k + 1]].max() for k in range(len(levels))])
    ap = p[0] * levels[0] + float(np.sum((p[1:] + p[:-1]) * np.diff(levels) / 2))
    r80 = t[int(np.argmin(np.abs(levels - 0.8)))]
    return {"ap": float(ap), "mtta_s": float(t.mean()), "tta_r80_s": float(r80)}


def roc_auc(scores, positive) -> float | None:
    """Area under the ROC curve: the chance a random positive outscores a random negative (ties half)."""
    s, y = np.asarray(scores, np.float64), np.asarray(positive, bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))
