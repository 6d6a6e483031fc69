"""Zero-shot CLIP: class prompts against the stored frame embeddings, no training.

Each class has a few prompts; their text embeddings (from the feature set's
own CLIP model, computed by the caller) are averaged and re-normalised. Per
frame, softmax(100 * cosine) over the four classes, CLIP's own logit scale.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from models.head_registry import register_head
from models.events import EventSpec, extract_events
from contracts.predictions import ClipPrediction
from contracts.sequences import BACKGROUND, Sequences
from contracts.taxonomy import CLASSES

DEFAULT_PROMPTS: dict[str, tuple[str, ...]] = {
    "bicycle": ("a dashcam photo of a cyclist suddenly crossing in front of the car",
                "a bicycle very close in front of a car on the road",
                "a near miss between a car and a cyclist"),
    "pedestrian": ("a dashcam photo of a pedestrian stepping into the road right in front of the car",
                   "a person crossing the street very close in front of a car",
                   "a near miss between a car and a pedestrian"),
    "vehicle": ("a dashcam photo of a car cutting in or braking hard right in front of us",
                "a vehicle dangerously close in front of the car",
                "a near miss between two cars"),
    "background": ("a dashcam photo of an ordinary road with normal traffic",
                   "a car driving safely down a street",
                   "an empty road seen through a windshield"),
}


@dataclass(frozen=True)
class ZeroShotConfig:
    prompts: dict = field(default_factory=lambda: {c: list(p) for c, p in DEFAULT_PROMPTS.items()})
    logit_scale: float = 100.0
    top_fraction: float = 0.25      # a clip's class probabilities: mean over its most alarming frames


def class_embeddings(text_embeddings: dict[str, np.ndarray]) -> np.ndarray:
    """(4, D) unit vectors in CLASSES order from per-class (n_prompts, D) text embeddings."""
    rows = []
    for c in CLASSES:
        v = np.asarray(text_embeddings[c], np.float32)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        m = v.mean(0)
        rows.append(m / np.linalg.norm(m))
    return np.stack(rows)


@register_head("zeroshot", kind="zeroshot", needs=("embeddings",), trainable=False,
               summary="class prompts against the CLIP frame embeddings; meaningful only with real CLIP weights")
class ZeroShotHead:
    def __init__(self, classes: np.ndarray, cfg: ZeroShotConfig = ZeroShotConfig(), events: EventSpec = EventSpec()):
        self.classes = np.asarray(classes, np.float32)
        self.cfg = cfg
        self.events = events

    def step_probs(self, seqs: Sequences) -> np.ndarray:
        logits = self.cfg.logit_scale * (seqs.clip @ self.classes.T)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def predict(self, seqs: Sequences, batch_size: int = 0) -> list[ClipPrediction]:
        steps = self.step_probs(seqs)
        preds = []
        for i, cid in enumerate(seqs.clip_ids):
            sp = steps[seqs.frames(i)]
            near = 1.0 - sp[:, BACKGROUND]
            k = max(1, int(np.ceil(self.cfg.top_fraction * len(sp))))
            probs = sp[np.argsort(-near)[:k]].mean(0)
            times = seqs.clip_times(i)
            preds.append(ClipPrediction(cid, probs.astype(np.float32), float(near.max()), times.astype(np.float32),
                                        near.astype(np.float32), extract_events(times, near, sp, self.events)))
        return preds

    def payload(self) -> dict:
        return {"kind": self.kind, "config": asdict(self.cfg), "events": asdict(self.events),
                "classes": self.classes.tolist()}

    @classmethod
    def fit(cls, name: str, data) -> tuple:
        """Nothing learnt: the prompts embedded with the feature set's own CLIP text encoder."""
        cfg = ZeroShotConfig()
        head = cls(class_embeddings({c: data.embed_text(list(p)) for c, p in cfg.prompts.items()}), cfg)
        return data.fixed(head), {"prompts": head.cfg.prompts}

    @classmethod
    def from_payload(cls, p: dict) -> "ZeroShotHead":
        return cls(np.asarray(p["classes"], np.float32), ZeroShotConfig(**p["config"]), EventSpec(**p["events"]))
