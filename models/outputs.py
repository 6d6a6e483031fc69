"""What a head says about a clip: class probabilities, a near-miss score, and events in time."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.labels import CLASSES


@dataclass(frozen=True)
class Incident:
    start_s: float
    peak_s: float
    end_s: float
    score: float
    cls: str


@dataclass
class ClipPrediction:
    clip_id: str
    probs: np.ndarray                 # (4,) in CLASSES order
    near_miss_score: float
    step_t_s: np.ndarray | None = None
    step_scores: np.ndarray | None = None
    incidents: list[Incident] | None = None

    @property
    def predicted_class(self) -> str:
        return CLASSES[int(np.argmax(self.probs))]
