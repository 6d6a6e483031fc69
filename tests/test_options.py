"""Each option is declared once, on the spec it configures: the flags, the flows' parameters and the
deployments follow from there, and an option cannot be recorded without reaching the code that reads it."""
import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from contracts.options import add_arguments, declared_options, from_arguments, option, options_model, spec_kwargs
from contracts.options import OptionsBase
from models.train_spec import TrainSpec
from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
from pipeline.featurize_options import Spread, StageChoice
from pipeline.specs import ClipSpec, DecodeSpec, IngestConfig, ObjectsSpec
from steps.options import FeaturizeOptions, IngestOptions, TrainOptions

ROOT = Path(__file__).resolve().parents[1]
YOLO = ROOT.parent / "shared" / "models" / "yolo_fastest"
SOURCES = {FeaturizeOptions: (StageChoice, ClipSpec, DecodeSpec, FeaturizeConfig, ObjectsSpec, Spread),
           IngestOptions: (IngestConfig,), TrainOptions: (TrainSpec,)}


@pytest.mark.parametrize("model", list(SOURCES), ids=lambda m: m.__name__)
def test_every_option_comes_from_a_spec_with_its_default(model):
    declared = {o.name: o for spec in SOURCES[model] for o in declared_options(spec)}
    assert set(model.model_fields) == set(declared)
    for name, field in model.model_fields.items():
        assert field.default == declared[name].default, name
        assert field.description == declared[name].info.help, name


def test_adding_an_option_is_one_field_on_its_spec():
    """A newcomer's threshold: one `option(...)` field, and it is a flag, a checked parameter and the spec's."""
    @dataclasses.dataclass(frozen=True)
    class Gate:
        min_gap_s: float = option(0.5, "merge events closer than this", gt=0)
        kept: int = 3    # not an option: no flag, no parameter

    Options = options_model("GateOptions", (Gate,), OptionsBase)
    parser = argparse.ArgumentParser()
    add_arguments(parser, Options)
    args = parser.parse_args(["--min-gap-s", "0.8"])
    chosen = from_arguments(args, Options)
    assert Gate(**spec_kwargs(chosen, Gate)) == Gate(min_gap_s=0.8)
    assert "kept" not in Options.model_fields
    with pytest.raises(Exception, match="greater than 0"):
        Options(min_gap_s=0)
    assert "(default: 0.5)" in _help(Options)


def _help(model) -> str:
    from nearmiss.cli import _Help
    parser = argparse.ArgumentParser(formatter_class=_Help)
    add_arguments(parser, model)
    return parser.format_help()


def test_options_reach_each_spec():
    o = FeaturizeOptions(untrained=True, fps=2.0, detector="darknet:/models/y", object_fps=5.0, object_min_score=0.4,
                         object_input=416, engine="torch", workers=2, chunk_clips=3)
    cfg = o.config()
    assert cfg.clip == ClipSpec(untrained=True) and cfg.decode == DecodeSpec(sample_fps=2.0) and cfg.engine == "torch"
    assert cfg.objects == ObjectsSpec("darknet:/models/y", fps=5.0, min_score=0.4, input_size=416)
    assert o.spread() == Spread(workers=2, chunk_clips=3)
    assert IngestOptions(settle_s=30).config() == IngestConfig(settle_s=30)
    assert TrainOptions(epochs=3).spec() == TrainSpec(epochs=3)


def test_prefect_yaml_states_only_what_differs_from_the_defaults():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    models = {"featurize": FeaturizeOptions, "options": None, "ingest": IngestOptions}
    flow_options = {"flows/ingest.py:ingest_flow": IngestOptions, "flows/featurize.py:featurize_flow": FeaturizeOptions}
    checked = 0
    for d in spec["deployments"]:
        for key, value in (d.get("parameters") or {}).items():
            model = flow_options.get(d["entrypoint"]) if key == "options" else models.get(key)
            if model is None or not isinstance(value, dict):
                continue
            for name, v in value.items():
                assert name in model.model_fields, f"{d['name']}: unknown option {key}.{name}"
                assert v != model.model_fields[name].default, f"{d['name']}: {key}.{name} repeats its default"
                checked += 1
    assert checked >= 2


def test_a_nightly_deployment_refuses_to_start_without_a_detector_in_one_line(monkeypatch):
    """The nightly featurize and pipeline deployments take the real-footage path; on a worker with no detector
    they would store no road users and the conflict and ttc heads would score nothing, silently."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    params = {d["name"]: d.get("parameters") or {} for d in spec["deployments"]}
    chosen = [params["pipeline-nightly"]["featurize"], params["featurize-nightly"]["options"]]
    monkeypatch.delenv("NEARMISS_DETECTOR", raising=False)
    for options in chosen:
        with pytest.raises(ValueError) as refused:
            FeaturizeOptions(**options).config()
        assert "NEARMISS_DETECTOR" in str(refused.value) and "\n" not in str(refused.value)
    monkeypatch.setenv("NEARMISS_DETECTOR", "darknet:/models/yolo_fastest")
    for options in chosen:
        cfg = FeaturizeOptions(**options).config()
        assert cfg.objects.detector == "darknet:/models/yolo_fastest" and cfg.clip is None


@pytest.mark.skipif(not YOLO.is_dir(), reason="needs ../shared/models/yolo_fastest")
def test_the_detector_threshold_option_cuts_the_detections_and_names_a_new_feature_set():
    import cv2
    from pipeline.featurize_models import object_detector

    frame = _real_frame()
    counts = {}
    for cut in (0.25, 0.6):
        cfg = FeaturizeOptions(stages="motion,objects", detector=f"darknet:{YOLO}", object_min_score=cut).config()
        (found,) = object_detector(cfg.objects, "cpu", "auto").detect(frame[None])
        assert len(found.scores) == 0 or float(found.scores.min()) >= cut
        counts[cut] = len(found.scores)
    assert counts[0.6] < counts[0.25]
    ids = {feature_set_identity(FeaturizeOptions(stages="motion,objects", detector=f"darknet:{YOLO}",
                                                 object_min_score=cut).config())[0] for cut in (0.25, 0.6)}
    assert len(ids) == 2
    del cv2


def _real_frame() -> np.ndarray:
    """A busy real frame: the Nexar clip's, at 320 px high."""
    import av
    path = ROOT.parent / "shared" / "data" / "real_dashcam" / "dad_000478.mp4"
    if not path.is_file():
        pytest.skip("needs ../shared/data/real_dashcam")
    with av.open(str(path)) as c:
        for k, f in enumerate(c.decode(video=0)):
            if k == 30:
                return f.to_ndarray(format="rgb24")
    raise AssertionError("the clip is shorter than 30 frames")


def test_where_the_work_runs_is_not_in_the_identity():
    base = FeaturizeConfig(clip=ClipSpec(untrained=True))
    for change in (dict(device="cuda"), dict(engine="openvino"), dict(batch_size=8), dict(decoder="pyav"),
                   dict(limit=3), dict(retry_failed=True), dict(decode_timeout_s=5.0), dict(decode_in_process=True),
                   dict(window_s=10.0), dict(decode_workers=1)):
        assert feature_set_identity(dataclasses.replace(base, **change))[0] == feature_set_identity(base)[0], change
