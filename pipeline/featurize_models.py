"""The networks a featurize configuration names, loaded (and compiled for their engine) once per process."""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from contracts.feature_set import FeatureSetInfo
from pipeline.detect import make_detector
from pipeline.detect_batching import shared
from pipeline.embed import ClipSpec, LoadedClip, WeightsUnavailable, engine_clip, resolve_device
from pipeline.featurize_config import FeaturizeConfig
from pipeline.specs import ObjectsSpec


@lru_cache(maxsize=2)
def clip_model(spec: ClipSpec | None, device: str, engine: str = "torch") -> LoadedClip | None:
    """The CLIP model a spec names, loaded once per process (a Dask worker keeps it between tasks), its image
    tower run by `engine` (pipeline/engines.py; with an engine's export cached, only the tower is loaded);
    None for a feature set without the CLIP stage."""
    if spec is None:
        return None
    return engine_clip(spec, resolve_device(device), engine)


def device_name(cfg: FeaturizeConfig, model: LoadedClip | None) -> str:
    """Where the networks run, as recorded per clip (with the engine, when not torch: cpu/openvino)."""
    where = str(model.device if model is not None else resolve_device(cfg.device))
    return f"{where}/{model.engine}" if model is not None and model.engine != "torch" else where


def with_available_clip(cfg: FeaturizeConfig) -> tuple[FeaturizeConfig, str | None]:
    """The configuration to run, and a note when the CLIP stage was dropped because its weights cannot be had
    here (only when asked to: clip_if_available, with another stage that needs no weights)."""
    if cfg.clip is None or not cfg.clip_if_available or cfg.objects is None:
        return cfg, None
    try:
        clip_model(cfg.clip, cfg.device, cfg.engine)
    except WeightsUnavailable as exc:
        note = (f"featurizing without CLIP (stages motion,objects): {str(exc).split('. ')[0]}. The ttc and "
                "conflict heads do not read CLIP; pass --pretrained PATH for the heads that do")
        return replace(cfg, clip=None), note
    return cfg, None


@lru_cache(maxsize=2)
def detector(spec: str, device: str, min_score: float = 0.25, input_size: int = 320, engine: str = "torch"):
    """The detector a spec names, loaded (and compiled for its engine) once per process, and shared by the clips
    featurized at once: their calls run as one batch (pipeline/detect_batching.py)."""
    return shared(make_detector(spec, str(resolve_device(device)), min_score, input_size, engine))


def object_detector(spec: ObjectsSpec, device: str, engine: str = "torch"):
    """The detector an objects stage runs, with its confidence cut, input size and engine."""
    return detector(spec.detector, device, spec.min_score, spec.input_size, engine)


def clip_spec_of_feature_set(fs: FeatureSetInfo, pretrained: str | None = None) -> ClipSpec:
    """The CLIP model a feature set was computed with, to embed text the same way (search, zero-shot).

    A local checkpoint is recorded by its hash, not its path, so the caller passes the file again.
    """
    weights = fs.weights
    if not fs.has_clip:
        raise ValueError("this feature set has no CLIP embeddings (stages " + ",".join(fs.stages) + "): "
                         "featurize with CLIP weights (--pretrained) for text search and zero-shot heads")
    if pretrained:
        return ClipSpec(model=fs.clip_model, pretrained=pretrained)
    if weights and weights.startswith("file:"):
        raise ValueError("this feature set used a local checkpoint; pass the same file again with --pretrained PATH")
    return ClipSpec(model=fs.clip_model, pretrained=None if weights == "untrained" else weights,
                    untrained=weights == "untrained")
