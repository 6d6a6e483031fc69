"""What a user chooses for featurize, declared once.

`nearmiss featurize` builds its flags from these fields, the `featurize` and `pipeline` flows take
one `FeaturizeOptions` parameter (so Prefect's deployment schema comes from it too), and
`prefect.yaml` sets the same names. Adding an option is one field here, plus what it changes in
`config()`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FeaturizeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    stages: str | None = Field(None, description="comma list of motion, clip, objects (e.g. motion,objects: road "
                               "users without CLIP weights). Default: motion and clip, plus objects with a detector; "
                               "with a detector, CLIP is left out (saying so) when its weights cannot be had here")
    model: str = Field("RN50", description="open_clip model name (a ResNet gives EmbCLIP grids too)")
    pretrained: str | None = Field("openai", description="open_clip pretrained tag, or a local checkpoint path")
    untrained: bool = Field(False, description="random CLIP weights: tests and benchmarks only")
    fps: float = Field(4.0, gt=0, description="frames sampled per second of video (motion, CLIP)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where CLIP, flow and the detector run")
    engine: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        "auto", description="what runs CLIP's image tower and the Darknet detector: auto is torch on CUDA and on a "
        "CPU the fastest installed (openvino, then onnxruntime); exported once and cached (NEARMISS_ENGINE_CACHE); "
        "the stored numbers agree within 1e-3 whichever runs (torch on a CPU runs the detector through OpenCV DNN)")
    batch_size: int = Field(64, gt=0, description="frames per CLIP forward pass, drawn from several clips")
    decoder: Literal["decord", "pyav"] = Field("decord", description="video decoding backend")
    limit: int | None = Field(None, gt=0, description="at most this many clips per run")
    retry_failed: bool = Field(False, description="try again clips whose decoding failed before")
    detector: str | None = Field(None, description="road users with time-to-collision: darknet:DIR "
                                 "(e.g. a Yolo-Fastest folder), darknet:CFG,WEIGHTS or torchvision:NAME[:WEIGHTS_FILE]; "
                                 "default: the NEARMISS_DETECTOR setting")
    object_fps: float = Field(10.0, gt=0, description="detector frames per second (tracking needs more than fps)")
    object_input: int = Field(320, ge=128, multiple_of=32, description="Darknet detector input size in pixels "
                              "(416 finds more small road users and riders for about 1.7x the detector's time; "
                              "bench/detector_sizes.py)")
    decode_timeout_s: float = Field(300.0, gt=0, description="a decoder that gives no frames for this long is "
                                    "stopped as hung (the clip goes to the other decoder, else fails)")
    decode_in_process: bool = Field(False, description="decode in this process instead of a child process per "
                                    "decode thread (no child to start; a decoder that crashes then ends the run)")
    # Where the work runs. None of these changes the stored numbers, so none is in the feature set's id.
    workers: int = Field(0, ge=0, description="spread featurize over N Dask workers on this machine "
                         "(0: in this process)")
    cluster: str | None = Field(None, description="address of a running Dask scheduler (tcp://host:8786): "
                                "featurize on its workers")
    worker_threads: bool = Field(False, description="local workers as threads of this process, not processes "
                                 "(lighter to start; the heavy work releases the GIL)")
    staging: str | None = Field(None, description="folder or fsspec URL where workers leave Parquet shards for "
                                "the merge (default: NAME.staging beside the catalog; shared storage for a cluster)")
    chunk_clips: int = Field(8, gt=0, description="clips claimed and featurized together: another featurize on "
                             "the same catalog takes other chunks; on workers, one task's shard, and what is redone "
                             "if a worker dies")

    def config(self):
        """The featurize configuration these options make (FeaturizeConfig)."""
        from pipeline.decode import DecodeSpec
        from pipeline.embed import ClipSpec
        from pipeline.featurize_config import FeaturizeConfig
        from pipeline.featurize_config import STAGES
        from pipeline.objects import ObjectsSpec
        from contracts.settings import settings

        detector = self.detector or settings().detector
        wanted = [s.strip() for s in (self.stages or "").split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)} in --stages; choose from {', '.join(STAGES)}")
        if "objects" in wanted and not detector:
            raise ValueError("--stages objects needs a detector: pass --detector darknet:/path/to/yolo_fastest "
                             "(or set NEARMISS_DETECTOR)")
        with_clip = "clip" in wanted or not wanted
        with_objects = bool(detector) and ("objects" in wanted or not wanted)
        return FeaturizeConfig(clip=ClipSpec(self.model, self.pretrained, self.untrained) if with_clip else None,
                               clip_if_available=not wanted,
                               decode=DecodeSpec(sample_fps=self.fps), device=self.device, engine=self.engine,
                               batch_size=self.batch_size, decoder=self.decoder, limit=self.limit,
                               retry_failed=self.retry_failed, decode_timeout_s=self.decode_timeout_s,
                               decode_in_process=self.decode_in_process,
                               objects=ObjectsSpec(detector, fps=self.object_fps, input_size=self.object_input)
                               if with_objects else None)


    def spread(self) -> Spread | None:
        """How to spread the work over a Dask cluster; None runs it in this process."""
        if not self.workers and not self.cluster:
            return None
        return Spread(self.workers or None, self.cluster, self.worker_threads, self.staging, self.chunk_clips)


@dataclass(frozen=True)
class Spread:
    workers: int | None          # a LocalCluster of this many workers, when no scheduler address is given
    cluster: str | None          # tcp://scheduler:8786
    threads: bool = False
    staging: str | None = None   # default: beside the catalog
    chunk_clips: int = 8


def add_arguments(parser: argparse.ArgumentParser, options: type[BaseModel] = FeaturizeOptions) -> None:
    """One flag per field: --kebab-name, its type, choices and default, the description as help."""
    for name, field in options.model_fields.items():
        flag = "--" + name.replace("_", "-")
        kind = field.annotation
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=field.description)
            continue
        choices = getattr(kind, "__args__", None) if getattr(kind, "__origin__", None) is Literal else None
        base = {int | None: int, float | None: float, str | None: str}.get(kind, kind)
        parser.add_argument(flag, default=field.default, choices=choices,
                            type=None if choices else base, help=field.description)


def from_arguments(args: argparse.Namespace, options: type[BaseModel] = FeaturizeOptions) -> BaseModel:
    return options(**{name: getattr(args, name) for name in options.model_fields})
