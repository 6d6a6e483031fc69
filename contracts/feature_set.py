"""A stored feature set, typed: what was computed and with which weights, read from its config.

The config is the JSON that pipeline/featurize_config.py hashes into the feature set's id; this is the
one place that knows its keys, so the catalog, the heads and the commands ask here, not by string."""
from __future__ import annotations

from dataclasses import dataclass, field

ALL_STAGES = ("motion", "clip", "objects")


@dataclass(frozen=True)
class FeatureSetInfo:
    id: str
    config: dict = field(hash=False, compare=False)

    @property
    def stages(self) -> tuple[str, ...]:
        # Feature sets made before stages could be chosen all had CLIP (and objects when a detector ran).
        if "stages" in self.config:
            return tuple(self.config["stages"])
        return tuple(s for s in ALL_STAGES if s != "objects" or self.has_objects)

    @property
    def has_clip(self) -> bool:
        return "clip" in self.stages

    @property
    def has_objects(self) -> bool:
        return "objects" in self.config

    @property
    def clip_model(self) -> str | None:
        return self.config.get("model")

    @property
    def weights(self) -> str | None:
        """The CLIP weights' identity: an open_clip tag, file:HASH for a local checkpoint, or untrained."""
        return self.config.get("weights")

    @property
    def untrained_clip(self) -> bool:
        return self.weights == "untrained"

    @property
    def real_clip(self) -> bool:
        """CLIP embeddings from real weights: only these mean something to a head that reads them."""
        return self.has_clip and self.weights not in ("untrained", None)
