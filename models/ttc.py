"""`ttc`: a near-miss head that needs no training, from tracked road users and their time-to-collision.

Per detector frame, each tracked road user gets a criticality in [0, 1], the product of:
- time-to-collision: 1 at or below `ttc_critical_s` (1.5 s, where traffic-conflict studies put a
  serious conflict), falling linearly to 0 at `ttc_safe_s` (3 s; forward-collision warnings fire
  around 2 to 2.5 s);
- the ego path: 1 in the path, `entering_weight` when closing on it, `beside_weight` just beside
  it (gap up to `beside_gap`), 0 further out (oncoming and overtaken traffic);
- nearness: the box height, from `min_height` (too far to judge its growth) to `full_height`;
- detector confidence, from `min_score` to `full_score`.
The frame's score is the most critical road user's, and its class is the predicted class;
background when nobody is critical. Events come out as for every head (models/events.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.cues import ramp
from models.events import EventSpec, extract_events, smooth
from models.head_registry import register_head
from contracts.predictions import ClipPrediction
from contracts.sequences import BACKGROUND, CLASS_INDEX, ClipObjects, Sequences


@dataclass(frozen=True)
class TTCConfig:
    ttc_critical_s: float = 1.5
    ttc_safe_s: float = 3.0
    entering_weight: float = 0.8
    beside_weight: float = 0.4
    beside_gap: float = 3.0           # corridor half-widths
    min_height: float = 0.08          # fractions of the frame height
    full_height: float = 0.25
    min_score: float = 0.3
    full_score: float = 0.6


def criticality(o: ClipObjects, cfg: TTCConfig) -> np.ndarray:
    """(K,) per tracked detection."""
    ttc = 1.0 - ramp(np.nan_to_num(o.ttc_s, posinf=1e9), cfg.ttc_critical_s, cfg.ttc_safe_s)
    path = np.where(o.in_path, 1.0, np.where(o.entering, cfg.entering_weight,
                                              np.where(o.path_gap <= cfg.beside_gap, cfg.beside_weight, 0.0)))
    height = o.boxes[:, 3] - o.boxes[:, 1] if len(o.boxes) else np.zeros(0)
    near = ramp(height, cfg.min_height, cfg.full_height)
    conf = ramp(o.score, cfg.min_score, cfg.full_score)
    return (ttc * path * near * conf).astype(np.float32)


def step_scores(o: ClipObjects, cfg: TTCConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per detector frame: score, class probabilities (M, 4), and the row of the most critical road user (-1)."""
    m = len(o.step_t_s)
    score, critical = np.zeros(m, np.float32), np.full(m, -1)
    crit = criticality(o, cfg)
    frame = np.clip(np.searchsorted(o.step_t_s, o.t_s - 1e-6), 0, max(m - 1, 0))
    for k in np.argsort(crit):          # ascending: the most critical row of a frame is written last
        if crit[k] > 0 and crit[k] >= score[frame[k]]:
            score[frame[k]], critical[frame[k]] = crit[k], k
    probs = np.zeros((m, 4), np.float32)
    probs[:, BACKGROUND] = 1.0 - score
    for f in np.flatnonzero(critical >= 0):
        probs[f, CLASS_INDEX[str(o.cls[critical[f]])]] = score[f]
    return score, probs, critical


@register_head("ttc", kind="ttc", needs=("objects",), trainable=False, report_rank=1,
               summary="no training: the most critical tracked road user (low time-to-collision, in or "
                       "entering the ego path, near, confidently detected); its class is the answer")
class TTCHead:
    def __init__(self, cfg: TTCConfig = TTCConfig(), events: EventSpec = EventSpec(min_duration_s=0.2)):
        self.cfg, self.events = cfg, events

    def predict(self, seqs: Sequences) -> list[ClipPrediction]:
        if seqs.objects is None:
            raise ValueError("the ttc head needs tracked road users: featurize with --detector (e.g. "
                             "--detector darknet:/path/to/yolo_fastest) and score that feature set")
        preds = []
        for cid, o in zip(seqs.clip_ids, seqs.objects):
            score, probs, _ = step_scores(o, self.cfg)
            events = extract_events(o.step_t_s, score, probs, self.events)
            smoothed = smooth(score, self.events.smooth)   # one flickering frame is no clip-level alarm
            clip = np.zeros(4, np.float32)
            clip[BACKGROUND] = 1.0
            if len(score) and smoothed.max() > 0:
                k = int(np.argmax(smoothed))
                clip[:] = probs[k] * (smoothed[k] / max(score[k], 1e-9))
                clip[BACKGROUND] = 1.0 - smoothed[k]
            preds.append(ClipPrediction(cid, clip, float(smoothed.max()) if len(score) else 0.0,
                                        o.step_t_s.astype(np.float32), score, events))
        return preds

    def payload(self) -> dict:
        return {"kind": self.kind, "config": asdict(self.cfg), "events": asdict(self.events)}

    @classmethod
    def fit(cls, name: str, data) -> tuple:
        head = cls()
        return data.fixed(head), head.payload()

    @classmethod
    def from_payload(cls, p: dict) -> "TTCHead":
        return cls(TTCConfig(**p["config"]), EventSpec(**p["events"]))
