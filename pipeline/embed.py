"""CLIP frame embeddings and the EmbCLIP spatial grid, batched across clips.

One forward pass of an open_clip ResNet gives both: the trunk's 2048 x 7 x 7
grid (EmbCLIP: the model with attnpool replaced by identity) and, through
attnpool, the pooled CLIP image embedding. The grid is stored compressed by a
channel projection (PCA, 2048 -> 32, so 32 x 7 x 7 = 1568 values per frame),
fitted once per feature set and versioned with it; the heads' learnable 1x1
compressor works on top of it.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from contracts.errors import WeightsUnavailable  # noqa: F401  (raised here; declared with the other expected errors)
from contracts.projection import ChannelProjection
from pipeline.engines import ExportSpec, compile_cached, compile_module, default_cache_dir, resolve_engine
from pipeline.hashing import sha256_text, sha256_weights
from pipeline.specs import ClipSpec  # noqa: F401  (its stage's configuration, declared there)


@dataclass
class LoadedClip:
    model: torch.nn.Module | None   # None: only the image tower, compiled for an engine (engine_clip)
    spec: ClipSpec
    device: torch.device
    embed_dim: int
    has_grid: bool
    image_size: int
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)   # from the weights' preprocess_cfg
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    engine: str = "torch"           # what runs the image tower (pipeline/engines.py); never changes the numbers
    tower: Callable[[np.ndarray], list[np.ndarray]] | None = None  # the compiled tower, when not torch


class ImageTower(torch.nn.Module):
    """The image side as one network, normalised input -> (pooled L2-normalised embedding[, trunk grid]):
    what an inference engine is given."""

    def __init__(self, model: torch.nn.Module, has_grid: bool):
        super().__init__()
        self.visual, self.has_grid = model.visual, has_grid

    def forward(self, x: torch.Tensor):
        v = self.visual
        if not self.has_grid:
            return F.normalize(v(x).float(), dim=-1)
        grid = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))
        return F.normalize(v.attnpool(grid).float(), dim=-1), grid


def with_engine(clip: LoadedClip, engine: str, cache_dir=None, threads: int = 0,
                weights_key: str | None = None) -> LoadedClip:
    """The same model with its image tower run by `engine` ('auto': the fastest here; pipeline/engines.py)."""
    from dataclasses import replace

    engine = resolve_engine(engine, clip.device)
    if engine == "torch":
        return replace(clip, engine="torch", tower=None)
    export = _tower_export(clip.spec.model, clip.image_size, clip.has_grid)
    tower = compile_module(ImageTower(clip.model, clip.has_grid), export, engine, cache_dir, threads,
                           weights_key=weights_key)
    return replace(clip, engine=engine, tower=tower)


def _tower_export(model: str, image_size: int, has_grid: bool) -> ExportSpec:
    return ExportSpec(f"clip-{model}", (3, image_size, image_size), ("pooled", "grid") if has_grid else ("pooled",))


def clip_weights_key(spec: ClipSpec) -> str:
    """What fixes a CLIP model's weights, known without building it: the seed for untrained weights, the file's
    hash for a checkpoint, the tag for open_clip's own (each with open_clip's version, which builds them)."""
    from importlib.metadata import version

    builder = f"open_clip {version('open_clip_torch')}"
    if spec.untrained:
        return f"{spec.model}|untrained, seed 0|{builder}"
    path = Path(spec.pretrained or "").expanduser()
    if spec.pretrained and path.is_file():
        return f"{spec.model}|file {sha256_weights(path)}"
    return f"{spec.model}|{spec.pretrained}|{builder}"


def engine_clip(spec: ClipSpec, device: torch.device, engine: str, cache_dir=None, threads: int = 0) -> LoadedClip:
    """CLIP for featurize, its image tower run by `engine`. When the tower was exported before for the same
    weights, the torch model is not built at all: open_clip's import and model construction were 7 s of a
    one-clip featurize run's 33 here. What the tower needs besides (sizes, normalisation) is kept beside
    the export."""
    import json

    engine = resolve_engine(engine, device)
    if engine == "torch":
        return load_clip(spec, device)
    cache = Path(cache_dir or default_cache_dir())
    key = clip_weights_key(spec)
    about = cache / f"clip-{spec.model}-{sha256_text(key)[:16]}.json"
    if about.exists():
        meta = json.loads(about.read_text())
        tower = compile_cached(_tower_export(spec.model, meta["image_size"], meta["has_grid"]), key, engine, cache,
                               threads)
        if tower is not None:
            return LoadedClip(None, spec, device, meta["embed_dim"], meta["has_grid"], meta["image_size"],
                              tuple(meta["mean"]), tuple(meta["std"]), engine, tower)
    clip = with_engine(load_clip(spec, device), engine, cache, threads, weights_key=key)
    tmp = about.with_name(f"{about.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"embed_dim": clip.embed_dim, "has_grid": clip.has_grid, "image_size": clip.image_size,
                               "mean": list(clip.mean), "std": list(clip.std), "weights": key}))
    os.replace(tmp, about)
    return clip


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU here")
    return torch.device(device)


def _hub_reachable(host: str = "huggingface.co") -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def load_clip(spec: ClipSpec, device: torch.device) -> LoadedClip:
    """open_clip model by name and pretrained tag, a local checkpoint, or (explicitly) untrained."""
    import open_clip

    if spec.untrained:
        with torch.random.fork_rng():  # the same random weights in every process, so feature sets agree
            torch.manual_seed(0)
            model = open_clip.create_model(spec.model, pretrained=None)
    elif spec.pretrained and Path(spec.pretrained).expanduser().is_file():
        model = open_clip.create_model(spec.model, pretrained=str(Path(spec.pretrained).expanduser()))
    else:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.model)) or "none"
        how = (f"Tags open_clip knows for {spec.model}: {tags}. Point --pretrained at a local checkpoint file (an "
               f"open_clip or OpenAI .pt/.bin for {spec.model}), or featurize without CLIP (--stages motion,objects "
               f"--detector darknet:DIR: the conflict and ttc heads need no CLIP), or pass --untrained for random "
               f"weights (tests and benchmarks only).")
        if not spec.pretrained:
            raise WeightsUnavailable(f"no weights named for {spec.model}. {how}")
        if _hub_reachable():
            try:
                model = open_clip.create_model(spec.model, pretrained=spec.pretrained)
            except Exception as exc:
                raise WeightsUnavailable(f"cannot load {spec.model} weights '{spec.pretrained}': {exc}. {how}") from None
        else:  # no network: the local cache only, without minutes of retries
            import huggingface_hub.constants as hub

            previous, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
            try:
                model = open_clip.create_model(spec.model, pretrained=spec.pretrained)
            except Exception:
                raise WeightsUnavailable(
                    f"cannot load {spec.model} weights '{spec.pretrained}': they are not in the local cache and "
                    f"the model hub cannot be reached (no network). {how}") from None
            finally:
                hub.HF_HUB_OFFLINE = previous
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    visual = model.visual
    has_grid = hasattr(visual, "attnpool") and hasattr(visual, "layer4")
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    # Normalisation travels with the weights (open_clip's preprocess_cfg), not as constants here.
    pre = getattr(visual, "preprocess_cfg", None) or {}
    norm = {k: tuple(float(v) for v in pre[k]) for k in ("mean", "std") if k in pre}
    return LoadedClip(model, spec, device, int(model.text_projection.shape[1]) if hasattr(model, "text_projection")
                      and model.text_projection is not None else int(visual.output_dim), has_grid, int(size),
                      **norm)


def to_model_input(frames: np.ndarray, size: int) -> np.ndarray:
    """Each frame squashed to size x size (the whole view kept), so clips of any shape share a batch."""
    import cv2

    if frames.shape[1:3] == (size, size):
        return frames
    if not len(frames):   # a decode window where the cascade chose no frame for CLIP
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _prepare(frames: np.ndarray, clip: LoadedClip) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised (B, 3, size, size); the whole view is kept (squashed, not cropped)."""
    device, size = clip.device, clip.image_size
    x = torch.from_numpy(frames).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(clip.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(clip.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


def embed_frames(clip: LoadedClip, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled L2-normalised embeddings (B, D) and, for ResNets, trunk grids (B, 2048, 7, 7)."""
    device = clip.device
    if clip.tower is not None:
        with torch.inference_mode():
            x = _prepare(frames, clip).numpy()
        out = clip.tower(x)
        return out[0], (out[1] if clip.has_grid else None)
    autocast = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else _null()
    with torch.inference_mode(), autocast:
        x = _prepare(frames, clip)
        visual = clip.model.visual
        if clip.has_grid:
            x = x.to(next(visual.parameters()).dtype)
            grid = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))
            pooled = visual.attnpool(grid)
        else:
            grid, pooled = None, clip.model.encode_image(x)
        pooled = F.normalize(pooled.float(), dim=-1)
    return pooled.cpu().numpy(), None if grid is None else grid.float().cpu().numpy()


def embed_text(clip: LoadedClip, texts: list[str]) -> np.ndarray:
    import open_clip

    tokens = open_clip.get_tokenizer(clip.spec.model)(texts).to(clip.device)
    with torch.inference_mode():
        return F.normalize(clip.model.encode_text(tokens).float(), dim=-1).cpu().numpy()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def fit_projection(grids: np.ndarray, k: int) -> ChannelProjection:
    """Top-k principal directions of the channel vectors (every spatial position is a sample)."""
    b, c, h, w = grids.shape
    x = torch.from_numpy(grids.transpose(0, 2, 3, 1).reshape(-1, c)).double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:k]
    matrix = evecs[:, order]
    # Fix each direction's sign so refits on the same data give the same numbers.
    signs = torch.sign(matrix[matrix.abs().argmax(0), torch.arange(matrix.shape[1])])
    return ChannelProjection(mean.float().numpy(), (matrix * signs).float().numpy(), b)
