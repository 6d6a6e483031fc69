"""Every step's options, each model generated from the specs that declare the options (contracts/options.py):
the CLI's flags and the flows' parameters. Nothing heavy is imported here."""
from __future__ import annotations

from dataclasses import replace

from contracts.options import OptionsBase, options_model, spec_kwargs
from models.train_spec import TrainSpec
from pipeline.featurize_options import FeaturizeOptions  # noqa: F401  (generated there, with its config())
from pipeline.specs import IngestConfig


class _IngestOptionsBase(OptionsBase):
    def config(self) -> IngestConfig:
        return replace(IngestConfig(), **spec_kwargs(self, IngestConfig))


class _TrainOptionsBase(OptionsBase):
    def spec(self) -> TrainSpec:
        return replace(TrainSpec(), **spec_kwargs(self, TrainSpec))


IngestOptions = options_model("IngestOptions", (IngestConfig,), _IngestOptionsBase, "Ingest's options.")
TrainOptions = options_model("TrainOptions", (TrainSpec,), _TrainOptionsBase, "Training's options.")
