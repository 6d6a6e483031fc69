"""Inference engines for the networks featurize runs: torch, ONNX Runtime or OpenVINO.

On a CPU the same network runs faster in an engine made for inference (on 2 cores here, OpenVINO runs CLIP's
RN50 tower 1.7x and the Darknet detector 2.6x as fast as torch and OpenCV DNN: bench/featurize_profile.py).
The network is exported once from torch to ONNX and cached, keyed by its weights (their hash, or what fixes
them: pipeline/embed.clip_weights_key), the input shape and the engine's version, and rebuilt when any of
them changes. The engine never changes what is stored: the feature-set identity does not name it, and
tests/test_engines.py holds the numbers to torch's within ENGINE_TOLERANCE.
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ENGINES = ("auto", "torch", "onnxruntime", "openvino")
EXPORT_FORMAT = 2      # bump when the exported graph changes for the same weights
ENGINE_TOLERANCE = 1e-3  # largest difference to torch's numbers a test allows (outputs are O(1) or smaller)


class EngineUnavailable(RuntimeError):
    pass


def engine_version(engine: str) -> str | None:
    """The installed engine's version, None when it is not installed."""
    try:
        if engine == "onnxruntime":
            import onnxruntime
            return onnxruntime.__version__
        if engine == "openvino":
            import openvino
            return openvino.__version__ if hasattr(openvino, "__version__") else openvino.get_version()
    except ImportError:
        return None
    return torch.__version__ if engine == "torch" else None


def resolve_engine(engine: str, device: torch.device) -> str:
    """'auto': torch on CUDA; on a CPU the fastest installed (OpenVINO, then ONNX Runtime, then torch)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        if device.type != "cpu":
            return "torch"
        return next(e for e in ("openvino", "onnxruntime", "torch") if engine_version(e))
    if engine != "torch" and device.type != "cpu":
        raise EngineUnavailable(f"--engine {engine} runs on the CPU here; on {device.type} use --engine torch")
    if not engine_version(engine):
        raise EngineUnavailable(f"--engine {engine} is not installed (pip install {engine}); "
                                "--engine torch needs nothing more")
    return engine


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 of the module's parameters and buffers, in order: the same weights, the same export."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    from contracts.settings import settings
    return Path(settings().engine_cache_dir).expanduser()


@dataclass(frozen=True)
class ExportSpec:
    """One network's export: what it is called, its inputs' shapes past the batch axis, its outputs."""
    name: str                       # e.g. clip-RN50
    input_shape: tuple[int, ...]    # without the batch axis
    outputs: tuple[str, ...]


def _export_path(weights_key: str, spec: ExportSpec, engine: str, cache_dir: Path) -> Path:
    key = hashlib.sha256("|".join([spec.name, weights_key, str(spec.input_shape), engine,
                                   engine_version(engine) or "", torch.__version__, str(EXPORT_FORMAT)]).encode())
    return cache_dir / f"{spec.name}-{engine}-{key.hexdigest()[:16]}.onnx"


_export_lock = threading.Lock()


def export_onnx(module: torch.nn.Module, spec: ExportSpec, engine: str, cache_dir: Path,
                weights_key: str | None = None) -> Path:
    """The module as ONNX in the cache (exported now unless already there), batch axis dynamic. weights_key:
    what fixes the module's weights, when the caller knows it without them (default: their hash)."""
    path = _export_path(weights_key or weights_hash(module), spec, engine, cache_dir)
    with _export_lock:
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        dummy = torch.zeros((2, *spec.input_shape), dtype=torch.float32)
        axes = {"input": {0: "batch"}, **{o: {0: "batch"} for o in spec.outputs}}
        module = module.cpu().eval()
        # The exporter's own UserWarnings (constant folding, shape inference) read like errors to a user and
        # say nothing about the result, which tests/test_engines.py checks against torch's numbers.
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # UserWarning, TracerWarning
            # The TorchScript exporter: the torch.export one needs onnxscript, which adds nothing here.
            torch.onnx.export(module, (dummy,), str(tmp), input_names=["input"], output_names=list(spec.outputs),
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        os.replace(tmp, path)  # whole or not at all: a killed export leaves only a .tmp
    return path


Runner = Callable[[np.ndarray], list[np.ndarray]]


def _onnxruntime_runner(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name   # "input" for our exports; a published model's own (YOLOX: "images")
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, np.float32)})


def _openvino_runner(path: Path, threads: int) -> Runner:
    import openvino as ov

    core = ov.Core()
    # f32 on every CPU: OpenVINO runs bf16 by default where the CPU has it (AMX, AVX512-BF16), which moves the
    # embeddings and boxes by about 0.5% (tests/test_engines.py caught it): the engine is no part of the feature
    # set, so it must give torch's numbers wherever it runs
    config = {"PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(path.parent / "openvino"),
              "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one request, one caller at a time

    def run(x: np.ndarray) -> list[np.ndarray]:
        with lock:
            result = request.infer({0: np.ascontiguousarray(x, np.float32)})
            return [np.array(result[o]) for o in compiled.outputs]
    return run


def compile_module(module: torch.nn.Module, spec: ExportSpec, engine: str, cache_dir: Path | None = None,
                   threads: int = 0, device: torch.device = torch.device("cpu"),
                   weights_key: str | None = None) -> Runner:
    """A function from a float32 batch (B, *input_shape) to the module's outputs, run by `engine` (torch on
    `device`; the others on the CPU)."""
    if engine == "torch":
        module = module.to(device).eval()

        def run(x: np.ndarray) -> list[np.ndarray]:
            with torch.inference_mode():
                out = module(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device))
            return [o.float().cpu().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
        return run
    return _runner(export_onnx(module, spec, engine, cache_dir or default_cache_dir(), weights_key), engine, threads)


def compile_cached(spec: ExportSpec, weights_key: str, engine: str, cache_dir: Path | None = None,
                   threads: int = 0) -> Runner | None:
    """The runner of an export made before for these weights (by their key), without the module; None when
    there is none yet (build the module and call compile_module with the same key)."""
    if engine == "torch":
        return None
    path = _export_path(weights_key, spec, engine, cache_dir or default_cache_dir())
    return _runner(path, engine, threads) if path.exists() else None


def onnx_file_runner(path: Path, engine: str, threads: int = 0) -> Runner:
    """A published ONNX model as it is (no torch module to export): ONNX Runtime or OpenVINO; `torch` and
    `auto` take the fastest installed of the two."""
    if engine not in ("onnxruntime", "openvino"):
        engine = next(e for e in ("openvino", "onnxruntime") if engine_version(e))
    return _runner(path, engine, threads)


def _runner(path: Path, engine: str, threads: int) -> Runner:
    return (_onnxruntime_runner if engine == "onnxruntime" else _openvino_runner)(path, threads)
