"""The heads nearmiss knows. `HeadInfo` is the only source of what a head is; each head declares it
once, on its class:

    @register_head("ttc", kind="ttc", needs=("objects",), trainable=False, summary="...")
    class TTCHead:
        def predict(self, seqs): ...
        def payload(self) -> dict: ...            # self.kind is set by the registration
        @classmethod
        def from_payload(cls, p): ...
        @classmethod
        def fit(cls, name, data: FitData) -> (TrainResult, params): ...   # models/fit_data.py

A head is one module in models/: models/heads.py finds every module that registers one. The CLI's
choices, training, scoring, evaluation, the report, the demo and the weights store ask this registry.
`needs` says what a head reads from the catalog: "embeddings" (CLIP/EmbCLIP frames), "flow"
(flow stacks), "objects" (tracked road users), "labels" (it must be trained on labelled clips).
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

from contracts.feature_set import FeatureSetInfo

NEEDS = frozenset({"embeddings", "flow", "objects", "labels"})


@dataclass(frozen=True)
class HeadInfo:
    name: str
    kind: str                  # the class (architecture family) that holds its weights
    cls: type | None           # None when read from the source without importing it (declared_heads)
    needs: frozenset
    trainable: bool            # False: `train` only registers a version of its fixed configuration
    summary: str
    parts: tuple[str, ...] = ()  # trained heads it combines; training hands it their newest versions
    report_rank: int | None = None  # the report shows this head first when it has incidents (lower first)

    @property
    def needs_flow(self) -> bool:
        return "flow" in self.needs

    def meaningful_for(self, fs: FeatureSetInfo) -> bool:
        """Whether its inputs mean something in a feature set: road users for "objects", real CLIP weights
        for "embeddings" (random weights embed noise)."""
        return ("objects" not in self.needs or fs.has_objects) and ("embeddings" not in self.needs or fs.real_clip)

    def unusable_reason(self, fs: FeatureSetInfo) -> str | None:
        """Why the head cannot run on a feature set at all (its inputs were not computed), or None."""
        if "objects" in self.needs and not fs.has_objects:
            return (f"the {self.name} head needs tracked road users, and this feature set has none: featurize with "
                    "--detector darknet:/path/to/yolo_fastest")
        if "embeddings" in self.needs and not fs.has_clip:
            return (f"the {self.name} head reads CLIP embeddings, and this feature set has none (stages "
                    f"{','.join(fs.stages)}): featurize with CLIP weights (--pretrained PATH)")
        return None


_HEADS: dict[str, HeadInfo] = {}
_KINDS: dict[str, type] = {}


def register_head(name: str, *, kind: str, needs: tuple[str, ...] = (), trainable: bool = True, summary: str = "",
                  parts: tuple[str, ...] = (), report_rank: int | None = None):
    unknown = set(needs) - NEEDS
    if unknown:
        raise ValueError(f"head {name!r} needs unknown inputs {sorted(unknown)}; known: {sorted(NEEDS)}")

    def add(cls: type) -> type:
        if name in _HEADS and _HEADS[name].cls is not cls:
            raise ValueError(f"head {name!r} is registered twice")
        if not callable(getattr(cls, "fit", None)):
            raise ValueError(f"head {name!r}: {cls.__name__} has no fit(name, data) classmethod (models/fit_data.py)")
        if _KINDS.get(kind, cls) is not cls:
            raise ValueError(f"head {name!r}: kind {kind!r} already belongs to {_KINDS[kind].__name__}")
        cls.kind = kind   # what its payload records; declared here, not again on the class
        _HEADS[name] = HeadInfo(name, kind, cls, frozenset(needs), trainable, summary, tuple(parts), report_rank)
        _KINDS[kind] = cls
        return cls
    return add


def list_heads() -> list[str]:
    """Every head, each after the heads it combines (the order they are trained in)."""
    order: list[str] = []

    def place(name: str) -> None:
        if name not in order:
            for part in _HEADS[name].parts:
                place(part)
            order.append(name)
    for name in _HEADS:
        place(name)
    return order


def meaningless_untrained(name: str) -> bool:
    """A head with nothing to learn that compares CLIP embeddings (zero-shot prompts): on random CLIP weights
    its scores mean nothing at all (a trained head still learns from random features)."""
    info = head_info(name)
    return bool(info and "embeddings" in info.needs and not info.trainable)


def default_report_head(candidates: list[tuple[str, bool, int]]) -> str | None:
    """Which head's incidents the report (and the review page) shows when none is named.

    candidates: (head name, whether its feature set has random CLIP weights, incidents) for heads with
    incidents. Heads with a report_rank first; then any head whose scores mean something (not one with nothing
    to learn that compares random CLIP embeddings, like zero-shot prompts); then the most incidents."""
    def order(c: tuple[str, bool, int]):
        name, untrained, count = c
        info = head_info(name)
        rank = info.report_rank if info and info.report_rank is not None else float("inf")
        return rank, untrained and meaningless_untrained(name), -count, name
    return min(candidates, key=order)[0] if candidates else None


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


def head_info(name: str) -> HeadInfo | None:
    """A head as registered (its module imported), else as its module declares it (read without importing)."""
    return _HEADS.get(name) or declared_heads().get(name)


def parse_head_ref(ref: str) -> tuple[str, int | None]:
    """'conflict' or 'conflict@3' -> (name, version); an unknown head is one line naming the known ones, told
    without importing any head (so without torch)."""
    name, _, version = ref.partition("@")
    if head_info(name) is None:
        raise ValueError(f"unknown head {name!r}: choose one of {', '.join(sorted(declared_heads()))}")
    if version and not version.isdigit():
        raise ValueError(f"head version must be a number, got {ref!r}")
    return name, int(version) if version else None


def head_modules() -> dict[str, list[str]]:
    """module -> the heads it registers, for every module of models/ with `@register_head(`, read from the
    source without importing it."""
    return {module: [info.name for info in infos] for module, infos in _declarations().items()}


def declared_heads() -> dict[str, HeadInfo]:
    """Every head as its decorator declares it (cls None), read without importing the head modules: the
    CLI, the report and the review page ask this, so they need no torch. tests/test_head_registry.py
    checks that it agrees with the registry."""
    return {info.name: info for infos in _declarations().values() for info in infos}


@functools.lru_cache(maxsize=1)   # the modules' source does not change while a process runs
def _declarations() -> dict[str, list[HeadInfo]]:
    here = Path(__file__).resolve().parent
    out = {}
    for path in sorted(here.glob("*.py")):
        text = path.read_text()
        if path.stem == "head_registry" or "@register_head(" not in text:
            continue
        infos = []
        for node in ast.walk(ast.parse(text, str(path))):
            for deco in getattr(node, "decorator_list", []):
                if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "register_head":
                    kw = {k.arg: ast.literal_eval(k.value) for k in deco.keywords}
                    infos.append(HeadInfo(ast.literal_eval(deco.args[0]), kw["kind"], None,
                                          frozenset(kw.get("needs", ())), kw.get("trainable", True),
                                          _joined(kw.get("summary", "")), tuple(kw.get("parts", ())),
                                          kw.get("report_rank")))
        if infos:
            out[f"models.{path.stem}"] = sorted(infos, key=lambda i: text.index(f'"{i.name}"'))
    return out


def _joined(summary) -> str:
    return summary if isinstance(summary, str) else "".join(summary)
