"""What training every head shares: the spec, the result, seeding, targets and the event threshold.

Each trainable head's loop lives in its own module (temporal.py, motion3d.py, fusion.py), which imports this one;
this one imports no head, so there is no import circle."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from contracts.predictions import ClipPrediction
from contracts.sequences import CLASS_INDEX, ClipLabel
from models.events import EventSpec, extract_events
from models.metrics import Event, event_f1

THRESHOLDS = tuple(np.round(np.arange(0.2, 0.81, 0.05), 2))


@dataclass
class TrainResult:
    head: object
    best_epoch: int
    val_metrics: dict
    history: list[dict] = field(default_factory=list)

    @property
    def first_loss(self) -> float:
        return self.history[0]["train_loss"]

    @property
    def best_loss(self) -> float:
        return min(h["train_loss"] for h in self.history)


def seeded(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def class_targets(labels: list[ClipLabel]) -> np.ndarray:
    return np.array([CLASS_INDEX[lab.cls] for lab in labels], np.int64)


def tune_events(preds: list[ClipPrediction], labels: list[ClipLabel], base: EventSpec = EventSpec()
                ) -> tuple[EventSpec, float]:
    """The event threshold with the best validation event F1 at tIoU 0.5."""
    truth = [Event(p.clip_id, lab.event_start_s, lab.event_end_s) for p, lab in zip(preds, labels)
             if lab.event is not None]
    best, best_f1 = base, -1.0
    for th in THRESHOLDS:
        spec = replace(base, threshold=float(th), bridge=float(th) * 0.6)
        events = [Event(p.clip_id, e.start_s, e.end_s, e.score)
                  for p in preds for e in extract_events(p.step_t_s, p.step_scores, None, spec)]
        f1 = event_f1(events, truth, 0.5)["f1"] if truth else 0.0
        if f1 > best_f1 + 1e-9:
            best, best_f1 = spec, f1
    return best, best_f1
