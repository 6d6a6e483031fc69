"""Late fusion: the feature-stream head and the 3D-CNN on motion, mixed in log-probability space.

The mixing weight is fitted on the validation split; per-step scores and
events come from the temporal head, which is the one that sees time.
"""
from __future__ import annotations

import numpy as np

from models.head_registry import head_from_payload, register_head
from contracts.predictions import ClipPrediction
from contracts.sequences import BACKGROUND, ClipLabel, Sequences
from models.evaluation import evaluate
from models.training import TrainResult, class_targets


def mix(p_a: np.ndarray, p_b: np.ndarray, alpha: float) -> np.ndarray:
    logp = alpha * np.log(np.clip(p_a, 1e-7, 1)) + (1 - alpha) * np.log(np.clip(p_b, 1e-7, 1))
    p = np.exp(logp - logp.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


@register_head("fusion", kind="fusion", needs=("embeddings", "flow", "labels"), parts=("recognition", "motion3d"),
               summary="late fusion of the newest recognition and motion3d versions")
class FusionHead:
    def __init__(self, temporal, motion3d, alpha: float):
        self.temporal, self.motion3d, self.alpha = temporal, motion3d, float(alpha)

    def predict(self, seqs: Sequences) -> list[ClipPrediction]:
        base = self.temporal.predict(seqs)
        other = self.motion3d.class_probs(seqs)
        for pred, p in zip(base, other):
            pred.probs = mix(pred.probs, p, self.alpha).astype(np.float32)
            pred.near_miss_score = float(1.0 - pred.probs[BACKGROUND])
        return base

    def payload(self) -> dict:
        return {"kind": self.kind, "alpha": self.alpha, "temporal": self.temporal.payload(),
                "motion3d": self.motion3d.payload()}

    @classmethod
    def fit(cls, name: str, data) -> tuple:
        """Only the mixing weight is learnt, on the validation split, over the newest parts."""
        (ref_t, temporal), (ref_m, motion3d) = data.parts["recognition"], data.parts["motion3d"]
        result = fit_fusion(temporal, motion3d, data.val, data.val_labels)
        return result, {"parts": [ref_t, ref_m], "alpha": result.head.alpha}

    @classmethod
    def from_payload(cls, p: dict) -> "FusionHead":
        return cls(head_from_payload(p["temporal"]), head_from_payload(p["motion3d"]), p["alpha"])


def fit_fusion(temporal, motion3d, val: Sequences,
               val_labels: list[ClipLabel]) -> TrainResult:
    """The mixing weight with the best validation accuracy (ties: closer to an even mix)."""
    y = class_targets(val_labels)
    p_a = np.stack([p.probs for p in temporal.predict(val)])
    p_b = motion3d.class_probs(val)
    alphas = np.round(np.arange(0.0, 1.01, 0.1), 2)
    accs = [float(np.mean(mix(p_a, p_b, a).argmax(1) == y)) for a in alphas]
    best = max(range(len(alphas)), key=lambda i: (accs[i], -abs(alphas[i] - 0.5)))
    head = FusionHead(temporal, motion3d, float(alphas[best]))
    history = [{"alpha": float(a), "val_accuracy": acc} for a, acc in zip(alphas, accs)]
    return TrainResult(head, 0, evaluate(head.predict(val), val_labels), history)
