"""Featurize a batch of clips: decode each once, compute motion (and road users), embed with CLIP.

Decode, motion and detection run on worker threads (native code releases the GIL); CLIP runs on the
calling thread in batches that mix frames from several clips. Pure compute: where results go, and
where the feature set's EmbCLIP projection is kept, is the caller's `FeatureSink` (the catalog, or
shard files on a worker).
"""
from __future__ import annotations

import queue
import threading
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
from pipeline.motion import MotionFeatures, concat_motion, motion_in_batches
from pipeline.objects import ObjectStage, frame_summary
from pipeline.settings import settings


class ClipSource(Protocol):
    clip_id: str
    paths: list[str]            # where the clip's bytes were seen, newest first


@dataclass(eq=False)
class ClipWork:
    """One clip on its way through the stages; `error` set when it cannot be featurized.

    A clip is decoded a window at a time (FeaturizeConfig.window_s): only the compact per-frame results
    (motion descriptors, detections, embeddings, projected EmbCLIP grids) accumulate here, so memory
    does not grow with the clip's pixels."""
    clip: ClipSource
    decoder: str | None = None       # the one that ran (decord falls back to PyAV per clip)
    error: str | None = None
    seconds: float = 0.0
    frames: int = 0                  # sampled frames handed to CLIP so far
    ended: bool = False              # the CLIP thread has every window (and the tracks)
    times: np.ndarray | None = None
    motion: MotionFeatures | None = None
    objects: object = None
    object_summary: np.ndarray | None = None
    embeddings: list = field(default_factory=list)
    grids: list = field(default_factory=list)     # raw trunk grids, only until the projection is fitted
    embclips: list = field(default_factory=list)  # projected grids
    embedded: int = 0
    _times: list = field(default_factory=list, repr=False)
    _motion: list = field(default_factory=list, repr=False)
    _detections: list = field(default_factory=list, repr=False)
    _object_times: list = field(default_factory=list, repr=False)

    def embedding(self) -> np.ndarray:
        return np.concatenate(self.embeddings)

    def embclip(self) -> np.ndarray | None:
        return np.concatenate(self.embclips) if self.embclips else None


@dataclass(eq=False)
class Piece:
    """One window of a clip, waiting for CLIP."""
    work: ClipWork
    frames: np.ndarray | None       # model input (n, size, size, 3)
    embedded: int = 0


class FeatureSink(Protocol):
    def stored_projection(self) -> ChannelProjection | None: ...

    def keep_projection(self, fitted: ChannelProjection) -> ChannelProjection:
        """Store a fitted projection; returns the one kept (a parallel run may have stored one first)."""

    def done(self, work: ClipWork, embclip: np.ndarray | None) -> None: ...

    def failed(self, work: ClipWork) -> None: ...


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:240]}" if text else type(exc).__name__


class _DecodeFailed(Exception):
    pass


def _windows(path: str, name: str, cfg: FeaturizeConfig, budget: int):
    """The decoder's windows; its errors become _DecodeFailed (another decoder may do better)."""
    it = None
    while True:
        try:
            if it is None:
                it = make_decoder(name).windows(path, cfg.decode, extra_fps=cfg.objects.fps if cfg.objects else 0.0,
                                                max_bytes=budget, window_s=cfg.window_s)
            s = next(it)
        except StopIteration:
            return
        except Exception as exc:  # DecodeError, or a decoder's own failure (memory, a library bug)
            raise _DecodeFailed(f"{Path(path).name}: {name}: {first_line(exc)}") from None
        yield s


def _put(out: queue.Queue, item, stop: threading.Event) -> None:
    """Wait for room on the clip's queue, unless the run is stopping (the CLIP thread raised)."""
    while True:
        try:
            out.put(item, timeout=0.2)
            return
        except queue.Full:
            if stop.is_set():
                raise _Stopped from None


class _Stopped(Exception):
    pass


def stream_clip(clip: ClipSource, cfg: FeaturizeConfig, motion_device: str, input_size: int,
                out: queue.Queue, stop: threading.Event) -> None:
    """On a worker thread: decode, motion and detection for one clip, a window at a time. Puts each
    window's frames on `out` as a Piece for CLIP, then the ClipWork itself when the clip is done.

    Whatever goes wrong stays with this clip: the error names the file, and the batch goes on. A clip
    decord cannot decode is tried again with PyAV, unless windows were already handed over."""
    t0 = time.perf_counter()
    work = ClipWork(clip)
    if stop.is_set():
        return
    try:
        work.error = "no readable path: the file was moved or deleted since ingest"
        budget = int(settings().memory_budget_gb * (1 << 30))
        stage = ObjectStage(cfg.objects, detector(cfg.objects.detector, cfg.device)) if cfg.objects else None
        # decord's memory grows with the file when it decodes a long clip a window at a time (measured on a
        # 30-minute clip: RSS spikes of 7-8 GB, against a steady 2.2 GB with PyAV), and PyAV gives the same
        # frames: clips longer than a window are decoded with PyAV first.
        long_clip = (getattr(clip, "duration_s", None) or 0.0) > cfg.window_s
        names = dict.fromkeys(["pyav", cfg.decoder] if long_clip else [cfg.decoder, "pyav"])
        for path in [p for p in clip.paths if Path(p).exists()]:
            for name in names:
                work.decoder = name
                try:
                    for s in _windows(path, name, cfg, budget):
                        times = s.times_s  # a window's end may hold detector frames only
                        try:
                            if len(times):
                                frames = to_model_input(s.frames, input_size)
                                work._motion.append(motion_in_batches(s.frames, s.prev_frames, s.prev_dt_s,
                                                                      cfg.motion, device=motion_device))
                            if stage is not None and len(s.extra_times_s):
                                work._detections += stage.detect(s.extra_frames)
                                work._object_times.append(s.extra_times_s)
                        except Exception as exc:
                            raise _ClipFailed(f"{Path(path).name}: featurize failed on this clip: "
                                              f"{first_line(exc)}") from None
                        del s
                        if len(times):
                            work._times.append(times)
                            work.frames += len(times)
                            _put(out, Piece(work, frames), stop)
                            del frames
                except _DecodeFailed as exc:
                    work.error = str(exc)
                    if work.frames:  # windows already went to CLIP: no second decoder for this clip
                        work.error = f"{work.error} (part-way, after {work.frames} frames)"
                        return
                    continue
                work.times = np.concatenate(work._times)
                work.motion = concat_motion(work._motion)
                if stage is not None:
                    times = np.concatenate(work._object_times) if work._object_times else np.zeros(0)
                    work.objects = stage.track(work._detections, times, work.motion.epipole)
                    work.object_summary = frame_summary(work.objects, work.times)
                work.error, work.seconds = None, time.perf_counter() - t0
                return
    except _ClipFailed as exc:
        work.error = str(exc)
    except _Stopped:
        return
    except BaseException as exc:  # never leave the CLIP thread waiting for this clip
        name = Path(clip.paths[0]).name if clip.paths else clip.clip_id[:16]
        work.error = f"{name}: featurize failed on this clip: {first_line(exc)}"
    finally:
        work._motion, work._detections = [], []
        if not stop.is_set():
            _put(out, work, stop)


class _ClipFailed(Exception):
    pass


class BatchFeaturizer:
    """Runs clips through decode -> motion/objects -> CLIP, handing each finished clip to the sink.

    Clips finish in the order given, and the EmbCLIP projection is fitted on the first frames in that
    order, whatever the decode threads' timing."""

    def __init__(self, cfg: FeaturizeConfig, model: LoadedClip, sink: FeatureSink):
        self.cfg, self.model, self.sink = cfg, model, sink
        self.motion_device = str(model.device) if cfg.motion.flow == "torch" else "cpu"
        self.projection = sink.stored_projection()
        self.ready: deque[Piece] = deque()      # windows decoded, waiting for CLIP
        self.open: deque[ClipWork] = deque()    # clips in order, not yet handed to the sink

    def run(self, clips: list[ClipSource]) -> None:
        workers = max(1, self.cfg.decode_workers)
        pool, stop = ThreadPoolExecutor(workers), threading.Event()
        try:
            self._run(clips, pool, stop, workers)
        finally:
            stop.set()  # if the sink or CLIP raised: decode threads stop instead of waiting for room
            pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, clips: list[ClipSource], pool: ThreadPoolExecutor, stop: threading.Event, workers: int) -> None:
        inflight: deque[queue.Queue] = deque()
        todo = deque(clips)
        while todo or inflight:
            while todo and len(inflight) < 2 * workers:
                q: queue.Queue = queue.Queue(maxsize=2)  # a clip runs at most two windows ahead of CLIP
                pool.submit(stream_clip, todo.popleft(), self.cfg, self.motion_device, self.model.image_size, q,
                            stop)
                inflight.append(q)
            item = inflight[0].get()
            if isinstance(item, Piece):
                if not self.open or self.open[-1] is not item.work:
                    self.open.append(item.work)
                self.ready.append(item)
            else:
                inflight.popleft()
                if item.error:
                    self.ready = deque(p for p in self.ready if p.work is not item)
                    if item in self.open:
                        self.open.remove(item)
                    self.sink.failed(item)
                    continue
                item.ended = True  # set here, in order after its windows: only now may it go to the sink
                if item not in self.open:
                    self.open.append(item)
            self._embed(final=False)
        self._embed(final=True)

    def _embed(self, final: bool) -> None:
        while True:
            pending = sum(len(p.frames) - p.embedded for p in self.ready)
            if pending == 0 or (pending < self.cfg.batch_size and not final):
                break
            self._embed_one_batch()
            while self.ready and self.ready[0].embedded == len(self.ready[0].frames):
                self.ready.popleft().frames = None  # free the pixels early
        if self.model.has_grid and self.projection is None:
            self._fit_projection(final)
        while self.open and self.open[0].ended and self.open[0].embedded == self.open[0].frames:
            if self.model.has_grid and self.projection is None:
                return
            w = self.open.popleft()
            self.sink.done(w, w.embclip())

    def _embed_one_batch(self) -> None:
        """One CLIP batch, taken across windows (and clips) in order."""
        take, parts = self.cfg.batch_size, []
        for p in self.ready:
            k = min(take, len(p.frames) - p.embedded)
            if k:
                parts.append((p, p.embedded, p.embedded + k))
                take -= k
            if take == 0:
                break
        emb, grid = embed_frames(self.model, np.concatenate([p.frames[a:b] for p, a, b in parts]))
        off = 0
        for p, a, b in parts:
            w = p.work
            w.embeddings.append(emb[off:off + b - a])
            if grid is not None:
                g = grid[off:off + b - a]
                if self.projection is not None:
                    w.embclips.append(self.projection.apply(g))
                else:
                    w.grids.append(g)
            w.embedded += b - a
            p.embedded = b
            off += b - a

    def _fit_projection(self, final: bool) -> None:
        """Fit the EmbCLIP projection on the first frames embedded (fewer when nothing more is coming),
        then project the grids held until now."""
        waiting = [w for w in self.open if w.grids]
        seen = sum(len(g) for w in waiting for g in w.grids)
        if not waiting or (seen < self.cfg.projection_frames and not (final and not self.ready)):
            return
        grids = np.concatenate([g for w in waiting for g in w.grids])[: max(self.cfg.projection_frames, 1)]
        self.projection = self.sink.keep_projection(fit_projection(grids, self.cfg.clip.embclip_channels))
        for w in waiting:
            w.embclips = [self.projection.apply(g) for g in w.grids] + w.embclips
            w.grids = []


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
