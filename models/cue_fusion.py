"""The conflict head's fusion of its cues, learnt from labelled clips when there are some.

Without labels the head fuses its cues as independent evidence with fixed weights, 1 - prod(1 - w_i * s_i).
With labelled clips in the catalog (sidecars, reviewers' verdicts) a fleet's own footage says how much each
cue is worth there: a regularised logistic regression (scikit-learn) over the per-window cue vector.

- A window is a detector frame with each cue's highest score over the second around it (a cue and the
  moment it proves rarely fall on the same frame).
- Positives: the windows inside a labelled event (its start to end, or a second either side of its peak),
  of near-miss clips; negatives: every window of a clip labelled normal driving (a reviewer's "not" makes
  the incident's window one). Near-miss clips without an event time, and their windows outside the event,
  teach nothing and are left out.
- A cue is evidence for a near-miss, never against: a cue that comes out with a negative weight is dropped
  and the rest refitted (a monotone fusion, as the fixed one is).
- The learnt score is rescaled so that no cue firing scores 0, as with the fixed weights; the alarm level is
  still set afterwards from the negatives only (models/calibration.py).
The stored fusion is plain numbers (weights, intercept): scoring needs no scikit-learn.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from contracts.sequences import ClipLabel
from models.cues.kinematics import window_matrix


@dataclass(frozen=True)
class FusionSpec:
    window_s: float = 1.0             # each cue's maximum over this span, centred, is the window's vector
    peak_margin_s: float = 1.0        # an event given by its peak only: this either side
    min_positive_clips: int = 3       # fewer labelled near-miss clips with events: keep the fixed weights
    min_negative_clips: int = 3
    c: float = 1.0                    # inverse L2 regularisation strength


@dataclass(frozen=True)
class LearnedFusion:
    weights: tuple[float, ...]        # per cue, >= 0
    intercept: float
    positives: int                    # windows it learnt from
    negatives: int

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(M, cues) window vectors -> (M,) scores in [0, 1], 0 where no cue fires."""
        z = windows @ np.asarray(self.weights) + self.intercept
        floor = 1 / (1 + np.exp(-self.intercept))
        return np.clip((1 / (1 + np.exp(-z)) - floor) / max(1 - floor, 1e-9), 0.0, 1.0)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "LearnedFusion | None":
        return None if not d else cls(tuple(d["weights"]), float(d["intercept"]), int(d["positives"]),
                                      int(d["negatives"]))


def window_vectors(t: np.ndarray, scores: np.ndarray, window_s: float) -> np.ndarray:
    """(M, cues): each cue's highest score over the window centred on each detector frame."""
    if not len(t):
        return np.zeros_like(scores, dtype=np.float64)
    half = window_s / 2
    idx, inside = window_matrix(t, np.searchsorted(t, t - half - 1e-9, side="left"),
                                np.searchsorted(t, t + half + 1e-9, side="right"))
    return np.where(inside[:, :, None], scores[idx], -np.inf).max(axis=1).astype(np.float64)


def labelled_windows(t: np.ndarray, windows: np.ndarray, label: ClipLabel,
                     spec: FusionSpec) -> tuple[np.ndarray, np.ndarray]:
    """(windows, 0/1 targets) that this clip's label speaks for."""
    if not label.is_near_miss:
        return windows, np.zeros(len(windows))
    if label.event_start_s is not None:
        lo, hi = label.event_start_s, label.event_end_s
    elif label.event_peak_s is not None:
        lo, hi = label.event_peak_s - spec.peak_margin_s, label.event_peak_s + spec.peak_margin_s
    else:
        return windows[:0], np.zeros(0)
    inside = (t >= lo - 1e-6) & (t <= hi + 1e-6)
    return windows[inside], np.ones(int(inside.sum()))


def fit_fusion(clips: list[tuple[np.ndarray, np.ndarray]], labels: list[ClipLabel],
               spec: FusionSpec = FusionSpec()) -> LearnedFusion | None:
    """clips: per labelled clip (detector-frame times, (M, cues) cue scores). None where the labels are too few
    to learn from: the caller keeps the fixed weights."""
    xs, ys, pos_clips, neg_clips = [], [], 0, 0
    for (t, scores), label in zip(clips, labels):
        if not len(t):
            continue
        x, y = labelled_windows(t, window_vectors(t, scores, spec.window_s), label, spec)
        if len(y):
            xs.append(x)
            ys.append(y)
            pos_clips += int(y[0] == 1)
            neg_clips += int(y[0] == 0)
    if pos_clips < spec.min_positive_clips or neg_clips < spec.min_negative_clips:
        return None
    x, y = np.concatenate(xs), np.concatenate(ys)
    from sklearn.linear_model import LogisticRegression

    kept = np.ones(x.shape[1], bool)
    while kept.any():
        model = LogisticRegression(C=spec.c, class_weight="balanced", max_iter=1000).fit(x[:, kept], y)
        coef = model.coef_[0]
        if (coef >= 0).all():
            break
        kept[np.flatnonzero(kept)[coef < 0]] = False     # evidence against a near-miss: not a cue's job
    weights = np.zeros(x.shape[1])
    if kept.any():
        weights[kept] = coef
        intercept = float(model.intercept_[0])
    else:
        intercept = 0.0
    return LearnedFusion(tuple(float(w) for w in weights), intercept, int(y.sum()), int((1 - y).sum()))
