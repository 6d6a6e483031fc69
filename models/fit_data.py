"""What a head's `fit` gets: the labelled splits and whatever else its recipe needs, gathered by the caller.

Every registered head class has `fit(name, data) -> (TrainResult, params)`; `params` is stored with the
version in `models.params`. Training a new head is its class's `fit`, nothing in flows/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from contracts.sequences import ClipLabel, Sequences


@dataclass
class FitData:
    train: Sequences
    train_labels: list[ClipLabel]
    val: Sequences
    val_labels: list[ClipLabel]
    spec: object                                   # models.training.TrainSpec
    log: Callable[[str], None] | None = print
    parts: dict[str, tuple[str, object]] = field(default_factory=dict)  # name -> (version ref, head): heads it combines
    embed_text: Callable[[list[str]], np.ndarray] | None = None          # the feature set's CLIP text encoder

    def fixed(self, head) -> "object":
        """A head with nothing to learn: its validation metrics, when there are labelled clips."""
        from models.evaluation import evaluate
        from models.training import TrainResult

        return TrainResult(head, 0, evaluate(head.predict(self.val), self.val_labels) if self.val_labels else {})
