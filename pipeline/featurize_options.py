"""What a user chooses for featurize, generated from the specs that declare it.

Each option is one `option(...)` field on the spec it configures (pipeline/specs.py, FeaturizeConfig,
`Spread` and `StageChoice` below). `FeaturizeOptions` is made from them: `nearmiss featurize` builds its
flags from it, the `featurize` and `pipeline` flows take it as one parameter (so Prefect's deployment
schema comes from it too), and `config()` hands each spec back its own fields. Adding an option is one
field on its spec.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from contracts.options import OptionsBase, option, options_model, spec_kwargs
from contracts.settings import settings
from pipeline.featurize_config import STAGES, FeaturizeConfig
from pipeline.specs import ClipSpec, DecodeSpec, ObjectsSpec


@dataclass(frozen=True)
class StageChoice:
    """Which stages run (the specs above say how)."""
    stages: str | None = option(None, "comma list of motion, clip, objects (e.g. motion,objects: road users without "
                                "CLIP weights). Default: motion and clip, plus objects with a detector; with a "
                                "detector, CLIP is left out (saying so) when its weights cannot be had here")
    detector: str | None = option(None, "road users with time-to-collision: darknet:DIR (e.g. a Yolo-Fastest "
                                  "folder), darknet:CFG,WEIGHTS, yolox:FILE.onnx or torchvision:NAME[:WEIGHTS_FILE]; default: the "
                                  "NEARMISS_DETECTOR setting")


@dataclass(frozen=True)
class Spread:
    """Where the work runs: over Dask workers, or (workers 0, no cluster) in this process. Not in the identity."""
    workers: int = option(0, "spread featurize over N Dask workers on this machine (0: in this process)", ge=0)
    cluster: str | None = option(None, "address of a running Dask scheduler (tcp://host:8786): featurize on its "
                                 "workers")
    threads: bool = option(False, "local workers as threads of this process, not processes (lighter to start; "
                           "the heavy work releases the GIL)", name="worker_threads")
    staging: str | None = option(None, "folder or fsspec URL where workers leave Parquet shards for the merge "
                                 "(default: NAME.staging beside the catalog; shared storage for a cluster)")
    chunk_clips: int = option(8, "clips claimed and featurized together: another featurize on the same catalog "
                              "takes other chunks; on workers, one task's shard, and what is redone if a worker "
                              "dies", gt=0)


class _FeaturizeOptionsBase(OptionsBase):
    def config(self) -> FeaturizeConfig:
        """The featurize configuration these options make."""
        choice = StageChoice(**spec_kwargs(self, StageChoice))
        detector = choice.detector or settings().detector
        wanted = [s.strip() for s in (choice.stages or "").split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)} in --stages; choose from {', '.join(STAGES)}")
        if "objects" in wanted and not detector:
            raise ValueError("the objects stage (road users: what the conflict and ttc heads score) needs a "
                             "detector: set NEARMISS_DETECTOR=darknet:/path/to/yolo_fastest where this runs (a "
                             "deployment: in the worker's environment), or pass --detector (a flow: the detector "
                             "parameter)")
        with_clip = "clip" in wanted or not wanted
        with_objects = bool(detector) and ("objects" in wanted or not wanted)
        return replace(FeaturizeConfig(**spec_kwargs(self, FeaturizeConfig)),
                       clip=ClipSpec(**spec_kwargs(self, ClipSpec)) if with_clip else None,
                       clip_if_available=not wanted,
                       decode=DecodeSpec(**spec_kwargs(self, DecodeSpec)),
                       objects=ObjectsSpec(detector, **spec_kwargs(self, ObjectsSpec)) if with_objects else None)

    def spread(self) -> Spread | None:
        """How to spread the work over a Dask cluster; None runs it in this process."""
        spread = Spread(**spec_kwargs(self, Spread))
        return spread if spread.workers or spread.cluster else None


FeaturizeOptions = options_model(
    "FeaturizeOptions", (StageChoice, ClipSpec, DecodeSpec, FeaturizeConfig, ObjectsSpec, Spread),
    _FeaturizeOptionsBase, "Featurize's options (pipeline/featurize_options.py), as the CLI's flags and the flows' "
    "parameter.")
