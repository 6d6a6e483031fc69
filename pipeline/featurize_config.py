"""Featurize's configuration, and the identity of the feature set it makes (no model is loaded here).

A feature set's id is a hash of everything that changes the stored numbers (model, weights, sampling,
motion settings, and the detector with its weights' hash when there is one), nothing else.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.options import option
from pipeline.detect import detector_identity
from pipeline.hashing import sha256_weights
from pipeline.specs import ClipSpec, DecodeSpec, MotionSpec, ObjectsSpec

FEATURE_VERSION = 1  # bump when the extractor's numbers change for the same configuration


STAGES = ("motion", "clip", "objects")  # motion always runs: the others read its frames and ego-motion


@dataclass(frozen=True)
class FeaturizeConfig:
    clip: ClipSpec | None = ClipSpec()  # None: no CLIP stage (motion and road users need no CLIP weights)
    decode: DecodeSpec = DecodeSpec()
    motion: MotionSpec = MotionSpec()
    objects: ObjectsSpec | None = None  # road users from a pretrained detector, tracked, with TTC
    # Where and how the work runs: none of these changes the stored numbers, so none is in the identity.
    device: str = option("auto", "where CLIP, flow and the detector run", choices=("auto", "cpu", "cuda"))
    engine: str = option("auto", "what runs CLIP's image tower and the Darknet detector: auto is torch on CUDA and "
                         "on a CPU the fastest installed (openvino, then onnxruntime); exported once and cached "
                         "(NEARMISS_ENGINE_CACHE); the stored numbers agree within 1e-3 whichever runs (torch on a "
                         "CPU runs the detector through OpenCV DNN)", choices=("auto", "torch", "onnxruntime", "openvino"))
    batch_size: int = option(64, "frames per CLIP forward pass, drawn from several clips", gt=0)
    decoder: str = option("decord", "video decoding backend", choices=("decord", "pyav"))
    decode_workers: int = 2
    limit: int | None = option(None, "at most this many clips per run", gt=0)
    retry_failed: bool = option(False, "try again clips whose decoding failed before")
    projection_frames: int = 64      # frames the EmbCLIP projection is fitted on, once per feature set
    window_s: float = 60.0           # a clip is decoded and held a window of this many seconds at a time
    decode_timeout_s: float = option(300.0, "a decoder that gives no frames for this long is stopped as hung (the "
                                     "clip goes to the other decoder, else fails)", gt=0)
    decode_in_process: bool = option(False, "decode in this process instead of a child process per decode thread "
                                     "(no child to start; a decoder that crashes then ends the run)")
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
        return f"file:{sha256_weights(p)[:16]}"
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
        objects["detector"] = detector_identity(cfg.objects.detector)  # the weights' hash, not a path
        if objects["input_size"] == 320:  # the size every earlier feature set used: their ids stay
            del objects["input_size"]
        if objects["frame_height"] == 0:  # the detector on the motion stage's frames, as before: ids stay
            del objects["frame_height"]
        if objects["cut_distance"] == 0:  # scene cuts not looked for, as before: ids stay
            del objects["cut_distance"]
        del objects["dense"]
        if not cfg.objects.cascade:  # dense, as before: the cascade's settings change nothing, ids stay
            for key in ("base_fps", "trigger_before_s", "trigger_after_s", "loom_rate", "trigger_height",
                        "appear_height", "trigger_gap", "trigger_closing", "brake_moving", "brake_ratio",
                        "swerve_rate", "shock_rate", "coarse_stack", "clip_base_fps"):
                del objects[key]
        elif clip is None:  # no CLIP stage: its rate outside windows changes nothing
            del objects["clip_base_fps"]
        config["objects"] = objects
    fs_id = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    name = (f"{clip.model}/{config['weights']}" if clip else "motion") + f"@{cfg.decode.sample_fps:g}fps"
    if cfg.objects is not None:
        name += f"+{config['objects']['detector'].rsplit(':', 1)[0]}@{cfg.objects.fps:g}fps"
    return fs_id, name, config
