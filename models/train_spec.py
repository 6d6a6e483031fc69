"""How a head is trained: the one source of training's settings and of the options among them (no torch
here, so the CLI builds `train`'s flags from it at once)."""
from __future__ import annotations

from dataclasses import dataclass

from contracts.options import option
from models.calibration import DEFAULT_ALARMS_PER_HOUR


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = option(80, "upper bound; early stopping on the val split", gt=0)
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.02
    patience: int = 15            # epochs without a better validation score before stopping
    seed: int = option(0, "seeds the initial weights and the batch order")
    aux_weight: float = 0.5       # the other output's loss, as a multi-task regulariser
    positive_weight: float = 2.0  # per-step loss weight of near-miss steps (they are the minority)
    alarms_per_hour: float = option(DEFAULT_ALARMS_PER_HOUR, "conflict: the false-alarm budget on the normal-driving "
                                    "clips labelled in the catalog; the alarm level is set from them", gt=0)
