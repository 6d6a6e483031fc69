"""Featurize's configuration, and the identity of the feature set it makes.

A feature set's id is a hash of everything that changes the stored numbers (model, weights, sampling,
motion settings, and the detector with its weights' hash when there is one), nothing else.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.decode import DecodeSpec
from pipeline.detect import make_detector
from pipeline.embed import ClipSpec, LoadedClip, load_clip, resolve_device
from pipeline.hashing import sha256_file
from pipeline.motion import MotionSpec
from pipeline.objects import ObjectsSpec

FEATURE_VERSION = 1  # bump when the extractor's numbers change for the same configuration


@dataclass(frozen=True)
class FeaturizeConfig:
    clip: ClipSpec = ClipSpec()
    decode: DecodeSpec = DecodeSpec()
    motion: MotionSpec = MotionSpec()
    device: str = "auto"
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


def _weights_identity(spec: ClipSpec) -> str | None:
    if spec.untrained:
        return "untrained"
    p = Path(spec.pretrained or "").expanduser()
    if spec.pretrained and p.is_file():
        return f"file:{sha256_file(p)[:16]}"
    return spec.pretrained


def feature_set_identity(cfg: FeaturizeConfig) -> tuple[str, str, dict]:
    """(id, name, config) of the feature set: everything that changes the stored numbers, nothing else."""
    config = {"version": FEATURE_VERSION, "model": cfg.clip.model, "weights": _weights_identity(cfg.clip),
              "embclip_channels": cfg.clip.embclip_channels, "decode": asdict(cfg.decode),
              "motion": asdict(cfg.motion)}
    if cfg.objects is not None:  # only then: feature sets made without a detector keep their ids
        objects = asdict(cfg.objects)
        objects["detector"] = detector(cfg.objects.detector, cfg.device).identity  # weights' hash, not a path
        config["objects"] = objects
    fs_id = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{cfg.clip.model}/{config['weights']}@{cfg.decode.sample_fps:g}fps"
    if cfg.objects is not None:
        name += f"+{config['objects']['detector'].rsplit(':', 1)[0]}@{cfg.objects.fps:g}fps"
    return fs_id, name, config


@lru_cache(maxsize=2)
def clip_model(spec: ClipSpec, device: str) -> LoadedClip:
    """The CLIP model a spec names, loaded once per process (a Dask worker keeps it between tasks)."""
    return load_clip(spec, resolve_device(device))


@lru_cache(maxsize=2)
def detector(spec: str, device: str):
    """The detector a spec names, loaded once per process."""
    return make_detector(spec, str(resolve_device(device)))


def clip_spec_of_feature_set(config: dict, pretrained: str | None = None) -> ClipSpec:
    """The CLIP model a feature set was computed with, to embed text the same way (search, zero-shot).

    A local checkpoint is recorded by its hash, not its path, so the caller passes the file again.
    """
    weights = config["weights"]
    if pretrained:
        return ClipSpec(model=config["model"], pretrained=pretrained)
    if weights and weights.startswith("file:"):
        raise ValueError("this feature set used a local checkpoint; pass the same file again with --pretrained PATH")
    return ClipSpec(model=config["model"], pretrained=None if weights == "untrained" else weights,
                    untrained=weights == "untrained")
