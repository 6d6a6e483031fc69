"""The heads nearmiss knows, each declared once where its class is defined:

    @register_head("ttc", kind="ttc", needs=("objects",), trainable=False, summary="...")
    class TTCHead:
        def predict(self, seqs): ...
        def payload(self) -> dict: ...
        @classmethod
        def from_payload(cls, p): ...
        @classmethod
        def fit(cls, name, data: FitData) -> (TrainResult, params): ...   # models/fit_data.py

The CLI's choices, training, scoring, the demo and the weights store ask this registry.
`needs` says what a head reads from the catalog: "embeddings" (CLIP/EmbCLIP frames), "flow"
(flow stacks), "objects" (tracked road users), "labels" (it must be trained on labelled clips).
Importing `models.heads` imports every head module, which fills the registry.
"""
from __future__ import annotations

from dataclasses import dataclass

NEEDS = frozenset({"embeddings", "flow", "objects", "labels"})


@dataclass(frozen=True)
class HeadInfo:
    name: str
    kind: str                  # the class (architecture family) that holds its weights
    cls: type
    needs: frozenset
    trainable: bool            # False: `train` only registers a version of its fixed configuration
    summary: str
    parts: tuple[str, ...] = ()  # trained heads it combines; training hands it their newest versions

    @property
    def needs_flow(self) -> bool:
        return "flow" in self.needs

    def meaningful_for(self, fs_config: dict) -> bool:
        """Whether its inputs mean something in a feature set: road users for "objects", real CLIP weights
        for "embeddings" (random weights embed noise)."""
        return ("objects" not in self.needs or "objects" in fs_config) and \
            ("embeddings" not in self.needs or fs_config.get("weights") not in ("untrained", None))

    def unusable_reason(self, fs_config: dict) -> str | None:
        """Why the head cannot run on a feature set at all (its inputs were not computed), or None."""
        if "objects" in self.needs and "objects" not in fs_config:
            return (f"the {self.name} head needs tracked road users, and this feature set has none: featurize with "
                    "--detector darknet:/path/to/yolo_fastest")
        if "embeddings" in self.needs and "clip" not in fs_config.get("stages", ("clip",)):
            return (f"the {self.name} head reads CLIP embeddings, and this feature set has none (stages "
                    f"{','.join(fs_config['stages'])}): featurize with CLIP weights (--pretrained PATH)")
        return None


_HEADS: dict[str, HeadInfo] = {}
_KINDS: dict[str, type] = {}


def register_head(name: str, *, kind: str, needs: tuple[str, ...] = (), trainable: bool = True, summary: str = "",
                  parts: tuple[str, ...] = ()):
    unknown = set(needs) - NEEDS
    if unknown:
        raise ValueError(f"head {name!r} needs unknown inputs {sorted(unknown)}; known: {sorted(NEEDS)}")

    def add(cls: type) -> type:
        if name in _HEADS and _HEADS[name].cls is not cls:
            raise ValueError(f"head {name!r} is registered twice")
        if not callable(getattr(cls, "fit", None)):
            raise ValueError(f"head {name!r}: {cls.__name__} has no fit(name, data) classmethod (models/fit_data.py)")
        _HEADS[name] = HeadInfo(name, kind, cls, frozenset(needs), trainable, summary, tuple(parts))
        _KINDS[kind] = cls
        return cls
    return add


def list_heads() -> list[str]:
    return list(_HEADS)


def get_head(name: str) -> HeadInfo:
    try:
        return _HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; choose one of {', '.join(_HEADS)}") from None


def head_from_payload(payload: dict):
    kind = payload["kind"]
    if kind not in _KINDS:
        raise ValueError(f"unknown head kind {kind!r} in weights file; known: {', '.join(_KINDS)}")
    return _KINDS[kind].from_payload(payload)
