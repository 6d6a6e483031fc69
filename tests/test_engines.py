"""Inference engines: the same numbers as torch within ENGINE_TOLERANCE on real frames, an export cache keyed
by the weights, and no change to the feature set's identity."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.decode import DecodeSpec, make_decoder
from pipeline.embed import ClipSpec, clip_weights_key, embed_frames, engine_clip, load_clip, to_model_input, with_engine
from pipeline.engines import (ENGINE_TOLERANCE, ExportSpec, compile_cached, compile_module, engine_version, export_onnx,
                              resolve_engine)
from pipeline.featurize_config import FeaturizeConfig, feature_set_identity

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_dashcam"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def clip():
    return load_clip(ClipSpec(untrained=True), CPU)


@pytest.fixture(scope="module")
def real_frames():
    if not (REAL / "nexar_rearend_akhra92.mp4").exists():
        pytest.skip("needs ../shared/data/real_dashcam")
    s = make_decoder("pyav").decode(str(REAL / "nexar_rearend_akhra92.mp4"), DecodeSpec(sample_fps=1.0))
    return to_model_input(s.frames[:6], 224)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_an_engine_gives_torchs_numbers_on_real_frames(clip, real_frames, engine, tmp_path):
    ref_pooled, ref_grid = embed_frames(clip, real_frames)
    fast = with_engine(clip, engine, cache_dir=tmp_path)
    assert fast.engine == engine and fast.tower is not None
    pooled, grid = embed_frames(fast, real_frames)
    assert pooled.shape == ref_pooled.shape and grid.shape == ref_grid.shape
    assert np.abs(pooled - ref_pooled).max() < ENGINE_TOLERANCE
    # Random weights make a small grid: the tolerance is relative to its scale.
    assert np.abs(grid - ref_grid).max() < ENGINE_TOLERANCE * np.abs(ref_grid).max()
    # Random weights map every frame close to one point: the error must also be small against how far apart
    # torch puts the frames, or an engine could mix frames up and still pass.
    spread = np.abs(ref_pooled[:, None] - ref_pooled[None]).max(-1)
    assert np.abs(pooled - ref_pooled).max() < 0.01 * spread[~np.eye(len(spread), dtype=bool)].min()
    again, _ = embed_frames(fast, real_frames[:2])   # another batch size: the batch axis is dynamic
    assert np.abs(again - pooled[:2]).max() < ENGINE_TOLERANCE


def test_the_export_is_cached_by_weights_and_rebuilt_when_they_change(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    spec = ExportSpec("tiny", (3, 8, 8), ("out",))
    first = export_onnx(net, spec, "onnxruntime", tmp_path)
    stamp = first.stat().st_mtime_ns
    assert export_onnx(net, spec, "onnxruntime", tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert export_onnx(net, replace(spec, input_shape=(3, 16, 16)), "onnxruntime", tmp_path) != first
    assert export_onnx(net, spec, "openvino", tmp_path) != first         # another engine (and version)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    changed = export_onnx(net, spec, "onnxruntime", tmp_path)
    assert changed != first
    x = np.random.default_rng(0).normal(size=(3, 3, 8, 8)).astype(np.float32)
    out, = compile_module(net, spec, "onnxruntime", tmp_path)(x)
    with torch.no_grad():
        assert np.abs(out - net(torch.from_numpy(x)).numpy()).max() < 1e-5   # the new weights, not the cached ones


def test_a_cached_tower_loads_without_building_the_torch_model(clip, real_frames, tmp_path, monkeypatch):
    """The second process to featurize with the same weights loads only the exported tower (no open_clip model
    built), and gets the numbers the first got; other weights have another key, so another export."""
    import pipeline.embed as embed

    first = engine_clip(ClipSpec(untrained=True), CPU, "openvino", cache_dir=tmp_path)
    assert first.model is not None and first.engine == "openvino"

    def no_building(*a, **k):
        raise AssertionError("the torch model was built although its export is cached")
    monkeypatch.setattr(embed, "load_clip", no_building)
    second = engine_clip(ClipSpec(untrained=True), CPU, "openvino", cache_dir=tmp_path)
    assert second.model is None and second.tower is not None
    assert (second.embed_dim, second.has_grid, second.image_size, second.mean, second.std) == \
        (first.embed_dim, first.has_grid, first.image_size, first.mean, first.std)
    a, b = embed_frames(first, real_frames), embed_frames(second, real_frames)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    ref, _ = embed_frames(clip, real_frames)   # and they are torch's
    assert np.abs(b[0] - ref).max() < ENGINE_TOLERANCE

    one, other = tmp_path / "a.pt", tmp_path / "b.pt"
    one.write_bytes(b"weights one")
    other.write_bytes(b"weights two")
    keys = {clip_weights_key(s) for s in (ClipSpec(untrained=True), ClipSpec(pretrained="openai"),
                                           ClipSpec(pretrained=str(one)), ClipSpec(pretrained=str(other)))}
    assert len(keys) == 4
    tower = ExportSpec("clip-RN50", (3, 224, 224), ("pooled", "grid"))
    assert compile_cached(tower, clip_weights_key(ClipSpec(untrained=True)), "openvino", tmp_path) is not None
    assert compile_cached(tower, clip_weights_key(ClipSpec(pretrained=str(one))), "openvino", tmp_path) is None


def test_auto_picks_an_installed_engine_and_the_feature_set_does_not_name_it():
    assert engine_version("onnxruntime") and engine_version("openvino")   # both are project dependencies
    assert resolve_engine("auto", CPU) == "openvino"
    assert resolve_engine("torch", CPU) == "torch"
    with pytest.raises(ValueError, match="unknown engine"):
        resolve_engine("tensorrt", CPU)
    cfg = FeaturizeConfig(clip=ClipSpec(untrained=True))
    assert {feature_set_identity(replace(cfg, engine=e))[0] for e in ("torch", "onnxruntime", "openvino")} == \
        {feature_set_identity(cfg)[0]}


YOLO = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "yolo_fastest"


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_the_detector_finds_opencvs_boxes_through_an_engine(engine, tmp_path, monkeypatch):
    if not (YOLO / "yolo-fastest-1.1-xl.weights").exists() or not REAL.exists():
        pytest.skip("needs ../shared/models/yolo_fastest and ../shared/data/real_dashcam")
    from pipeline.detect import make_detector
    monkeypatch.setenv("NEARMISS_ENGINE_CACHE", str(tmp_path))
    names = ("nexar_rearend_akhra92.mp4", "moto_pedestrians_compilation_DevinP6lluste.mp4")
    frames = np.concatenate([make_decoder("pyav").decode(str(REAL / name), DecodeSpec(sample_fps=1.0)).frames[:4]
                             for name in names])
    reference = make_detector(f"darknet:{YOLO}")                      # OpenCV DNN reads the Darknet files
    fast = make_detector(f"darknet:{YOLO}", engine=engine)
    assert (reference.engine, fast.engine) == ("opencv", engine) and fast.identity == reference.identity
    found = 0
    for want, got in zip(reference.detect(frames), fast.detect(frames)):
        assert got.coco == want.coco
        assert np.abs(got.boxes - want.boxes).max(initial=0) < ENGINE_TOLERANCE
        assert np.abs(got.scores - want.scores).max(initial=0) < ENGINE_TOLERANCE
        found += len(want)
    assert found >= 10   # real road users were compared, not empty frames
