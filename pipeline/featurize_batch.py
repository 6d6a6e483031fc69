"""Featurize a batch of clips: decode each once, compute motion (and road users), embed with CLIP.

Decode, motion and detection run on worker threads (native code releases the GIL); CLIP runs on the
calling thread in batches that mix frames from several clips. Pure compute: where results go, and
where the feature set's EmbCLIP projection is kept, is the caller's `FeatureSink` (the catalog, or
shard files on a worker).
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.decode import make_decoder
from pipeline.embed import ChannelProjection, LoadedClip, embed_frames, fit_projection, to_model_input
from pipeline.featurize_config import FeaturizeConfig, detector
from pipeline.motion import motion_features
from pipeline.objects import ObjectStage, frame_summary
from pipeline.settings import settings


class ClipSource(Protocol):
    clip_id: str
    paths: list[str]            # where the clip's bytes were seen, newest first


@dataclass
class ClipWork:
    """One clip on its way through the stages; `error` set when it cannot be featurized."""
    clip: ClipSource
    times: np.ndarray | None = None
    frames: np.ndarray | None = None
    motion: object = None
    objects: object = None
    object_summary: np.ndarray | None = None
    decoder: str | None = None       # the one that ran (decord falls back to PyAV per clip)
    error: str | None = None
    seconds: float = 0.0
    embeddings: list = field(default_factory=list)
    grids: list = field(default_factory=list)
    embedded: int = 0

    def embedding(self) -> np.ndarray:
        return np.concatenate(self.embeddings)

    def grid(self) -> np.ndarray | None:
        return np.concatenate(self.grids) if self.grids else None


class FeatureSink(Protocol):
    def stored_projection(self) -> ChannelProjection | None: ...

    def keep_projection(self, fitted: ChannelProjection) -> ChannelProjection:
        """Store a fitted projection; returns the one kept (a parallel run may have stored one first)."""

    def done(self, work: ClipWork, embclip: np.ndarray | None) -> None: ...

    def failed(self, work: ClipWork) -> None: ...


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:240]}" if text else type(exc).__name__


def decode_and_move(clip: ClipSource, cfg: FeaturizeConfig, motion_device: str, input_size: int) -> ClipWork:
    """Decode, motion and objects for one clip. Whatever goes wrong stays with this clip: the error
    names the file, and the batch goes on. A clip decord cannot decode is tried again with PyAV."""
    t0 = time.perf_counter()
    work = ClipWork(clip)
    last_error = "no readable path: the file was moved or deleted since ingest"
    budget = int(settings().memory_budget_gb * (1 << 30))
    for path in clip.paths:
        if not Path(path).exists():
            continue
        for name in dict.fromkeys([cfg.decoder, "pyav"]):
            try:
                s = make_decoder(name).decode(path, cfg.decode, extra_fps=cfg.objects.fps if cfg.objects else 0.0,
                                              max_bytes=budget)
            except Exception as exc:  # DecodeError, or a decoder's own failure (memory, a library bug)
                last_error = f"{Path(path).name}: {name}: {first_line(exc)}"
                continue
            work.decoder = name
            try:
                work.times, work.frames = s.times_s, to_model_input(s.frames, input_size)
                work.motion = motion_features(s.frames, s.prev_frames, s.prev_dt_s, cfg.motion, device=motion_device)
                if cfg.objects is not None:
                    stage = ObjectStage(cfg.objects, detector(cfg.objects.detector, cfg.device))
                    work.objects = stage.run(s.extra_frames, s.extra_times_s, work.motion.epipole)
                    work.object_summary = frame_summary(work.objects, s.times_s)
            except Exception as exc:
                work.error = f"{Path(path).name}: featurize failed on this clip: {first_line(exc)}"
                return work
            work.seconds = time.perf_counter() - t0
            return work
    work.error = last_error
    return work


class BatchFeaturizer:
    """Runs clips through decode -> motion/objects -> CLIP, handing each finished clip to the sink."""

    def __init__(self, cfg: FeaturizeConfig, model: LoadedClip, sink: FeatureSink):
        self.cfg, self.model, self.sink = cfg, model, sink
        self.motion_device = str(model.device) if cfg.motion.flow == "torch" else "cpu"
        self.projection = sink.stored_projection()
        self.ready: deque[ClipWork] = deque()   # decoded, waiting for CLIP
        self.held: list[ClipWork] = []          # embedded, waiting for the projection to be fitted

    def run(self, clips: list[ClipSource]) -> None:
        workers = max(1, self.cfg.decode_workers)
        with ThreadPoolExecutor(workers) as pool:
            inflight, queue = deque(), deque(clips)
            while queue or inflight:
                while queue and len(inflight) < 2 * workers:
                    inflight.append(pool.submit(decode_and_move, queue.popleft(), self.cfg, self.motion_device,
                                                self.model.image_size))
                work = inflight.popleft().result()
                if work.error:
                    self.sink.failed(work)
                    continue
                self.ready.append(work)
                self._embed(final=False)
            self._embed(final=True)

    def _embed(self, final: bool) -> None:
        while self.ready:
            pending = sum(len(w.times) - w.embedded for w in self.ready)
            if pending < self.cfg.batch_size and not final:
                return
            self._embed_one_batch()
            while self.ready and self.ready[0].embedded == len(self.ready[0].times):
                w = self.ready.popleft()
                w.frames = None  # free the pixels early
                self.held.append(w)
            if self.model.has_grid and self.projection is None and not self._fit_projection(final):
                continue
            while self.held and (self.projection is not None or not self.model.has_grid):
                w = self.held.pop(0)
                grid = w.grid() if self.model.has_grid else None
                self.sink.done(w, self.projection.apply(grid) if grid is not None else None)

    def _embed_one_batch(self) -> None:
        """One CLIP batch, taken across clips in order."""
        take, parts = self.cfg.batch_size, []
        for w in self.ready:
            k = min(take, len(w.times) - w.embedded)
            if k:
                parts.append((w, w.embedded, w.embedded + k))
                take -= k
            if take == 0:
                break
        emb, grid = embed_frames(self.model, np.concatenate([w.frames[a:b] for w, a, b in parts]))
        off = 0
        for w, a, b in parts:
            w.embeddings.append(emb[off:off + b - a])
            if grid is not None:
                w.grids.append(grid[off:off + b - a])
            w.embedded = b
            off += b - a

    def _fit_projection(self, final: bool) -> bool:
        """Fit the EmbCLIP projection once enough frames are embedded (or nothing more is coming)."""
        seen = sum(len(w.times) for w in self.held)
        if seen < self.cfg.projection_frames and not (final and not self.ready):
            return False
        if self.held:
            grids = np.concatenate([g for w in self.held for g in w.grids])[: max(self.cfg.projection_frames, 1)]
            self.projection = self.sink.keep_projection(fit_projection(grids, self.cfg.clip.embclip_channels))
        return True


def projection_lead(durations_s: list[float | None], sample_fps: float, projection_frames: int) -> int:
    """How many leading clips cover the frames the EmbCLIP projection is fitted on.

    Spread over workers, the driver featurizes these itself first, so that the projection (and so every
    stored number) is the one a single process would fit: on the first frames, in catalog order."""
    frames = 0.0
    for k, d in enumerate(durations_s, 1):
        frames += (d or 0.0) * sample_fps
        if frames >= projection_frames:
            return k
    return len(durations_s)
