"""Featurize's configuration, and the identity of the feature set it makes.

A feature set's id is a hash of everything that changes the stored numbers (model, weights, sampling,
motion settings, and the detector with its weights' hash when there is one), nothing else.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

from contracts.feature_set import FeatureSetInfo
from pipeline.decode import DecodeSpec
from pipeline.detect import make_detector
from pipeline.embed import ClipSpec, LoadedClip, WeightsUnavailable, load_clip, resolve_device, with_engine
from pipeline.hashing import sha256_file
from pipeline.motion import MotionSpec
from pipeline.objects import ObjectsSpec

FEATURE_VERSION = 1  # bump when the extractor's numbers change for the same configuration


STAGES = ("motion", "clip", "objects")  # motion always runs: the others read its frames and ego-motion


@dataclass(frozen=True)
class FeaturizeConfig:
    clip: ClipSpec | None = ClipSpec()  # None: no CLIP stage (motion and road users need no CLIP weights)
    decode: DecodeSpec = DecodeSpec()
    motion: MotionSpec = MotionSpec()
    device: str = "auto"
    engine: str = "auto"             # what runs the networks (torch, onnxruntime, openvino): not in the identity
    batch_size: int = 64             # frames per CLIP forward pass, drawn from several clips
    decoder: str = "decord"
    decode_workers: int = 2
    limit: int | None = None
    retry_failed: bool = False
    projection_frames: int = 64      # frames the EmbCLIP projection is fitted on, once per feature set
    window_s: float = 60.0           # a clip is decoded and held a window of this many seconds at a time
    decode_timeout_s: float = 300.0  # a decode child silent this long on one window is stopped: the clip fails
    decode_in_process: bool = False  # decode in this process: no child to start, but a decoder crash ends the batch
    objects: ObjectsSpec | None = None  # road users from a pretrained detector, tracked, with TTC
    clip_if_available: bool = False  # drop the CLIP stage (saying so) when its weights cannot be had here

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(s for s in STAGES if s == "motion" or (s == "clip" and self.clip is not None)
                     or (s == "objects" and self.objects is not None))


def _weights_identity(spec: ClipSpec | None) -> str | None:
    if spec is None:
        return None
    if spec.untrained:
        return "untrained"
    p = Path(spec.pretrained or "").expanduser()
    if spec.pretrained and p.is_file():
        return f"file:{sha256_file(p)[:16]}"
    return spec.pretrained


def feature_set_identity(cfg: FeaturizeConfig) -> tuple[str, str, dict]:
    """(id, name, config) of the feature set: everything that changes the stored numbers, nothing else."""
    clip = cfg.clip
    config = {"version": FEATURE_VERSION, "model": clip.model if clip else None, "weights": _weights_identity(clip),
              "embclip_channels": clip.embclip_channels if clip else None, "decode": asdict(cfg.decode),
              "motion": asdict(cfg.motion)}
    if clip is None:  # only then: feature sets with CLIP keep the ids they had before stages were chosen
        config["stages"] = list(cfg.stages)
    if cfg.objects is not None:  # only then: feature sets made without a detector keep their ids
        objects = asdict(cfg.objects)
        objects["detector"] = object_detector(cfg.objects, cfg.device, cfg.engine).identity  # weights' hash, not a path
        if objects["input_size"] == 320:  # the size every earlier feature set used: their ids stay
            del objects["input_size"]
        config["objects"] = objects
    fs_id = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    name = (f"{clip.model}/{config['weights']}" if clip else "motion") + f"@{cfg.decode.sample_fps:g}fps"
    if cfg.objects is not None:
        name += f"+{config['objects']['detector'].rsplit(':', 1)[0]}@{cfg.objects.fps:g}fps"
    return fs_id, name, config


@lru_cache(maxsize=2)
def clip_model(spec: ClipSpec | None, device: str, engine: str = "torch") -> LoadedClip | None:
    """The CLIP model a spec names, loaded once per process (a Dask worker keeps it between tasks), its image
    tower run by `engine` (pipeline/engines.py); None for a feature set without the CLIP stage."""
    if spec is None:
        return None
    return with_engine(load_clip(spec, resolve_device(device)), engine)


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
    """The detector a spec names, loaded (and compiled for its engine) once per process."""
    return make_detector(spec, str(resolve_device(device)), min_score, input_size, engine)


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
