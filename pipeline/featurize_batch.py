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
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from contracts.flow_stacks import PackedStacks, pack_stacks
from contracts.settings import settings
from pipeline.cascade import base_indices
from pipeline.decode import make_decoder
from pipeline.decode_child import ChildDecodeError, ChildDecoders, can_start_children
from pipeline.embed import ChannelProjection, LoadedClip, embed_frames, fit_projection, resolve_device, to_model_input
from pipeline.featurize_config import FeaturizeConfig
from pipeline.featurize_models import object_detector
from pipeline.motion import MotionFeatures, motion_in_batches
from pipeline.objects import ObjectStage, frame_summary
from pipeline.specs import ObjectsSpec


class ClipSource(Protocol):
    clip_id: str
    paths: list[str]            # where the clip's bytes were seen, newest first


@dataclass(eq=False)
class ClipWork:
    """One clip on its way through the stages; `error` set when it cannot be featurized.

    A clip is decoded a window at a time (FeaturizeConfig.window_s), and each window's finished rows go
    to the sink as soon as they are embedded: only what tracking needs (times, the focus of expansion,
    detections) stays here until the clip's end, so memory does not grow with the clip."""
    clip: ClipSource
    decoder: str | None = None       # the one that ran (decord falls back to PyAV per clip)
    error: str | None = None
    seconds: float = 0.0
    frames: int = 0                  # sampled frames handed to CLIP so far
    ended: bool = False              # the CLIP thread has every window (and the tracks)
    times: np.ndarray | None = None
    objects: object = None
    object_summary: np.ndarray | None = None
    pieces: deque = field(default_factory=deque)  # windows received, not yet handed to the sink
    _times: list = field(default_factory=list, repr=False)
    _epipoles: list = field(default_factory=list, repr=False)
    _detections: list = field(default_factory=list, repr=False)
    _object_times: list = field(default_factory=list, repr=False)
    _grid_frames: int = 0                                           # the detector's grid, detected or not
    _signatures: list = field(default_factory=list, repr=False)   # the detector frames' colour histograms (cuts)


@dataclass(eq=False)
class Piece:
    """One window of a clip: its frames for CLIP, then its finished rows for the sink."""
    work: ClipWork
    frames: np.ndarray | None       # model input (n, size, size, 3), freed once embedded
    start: int                      # the clip's frame index of its first frame
    times: np.ndarray
    motion: MotionFeatures
    embedded: int = 0
    embeddings: list = field(default_factory=list)
    grids: list = field(default_factory=list)     # raw trunk grids, only until the projection is fitted
    embclips: list = field(default_factory=list)  # projected grids
    flow: PackedStacks | None = None  # with the cascade: the stacks as stored (dense in its windows, else coarse)
    keep: np.ndarray | None = None    # with the cascade: the frames CLIP embeds (its windows, and its base rate)
    settled: bool = True              # False until the detector has said where the cascade's windows are

    def to_embed(self) -> int:
        """Frames CLIP has yet to embed (none known before the piece is settled)."""
        return len(self.frames) - self.embedded if self.settled and self.frames is not None else 0

    def finished(self, projected: bool) -> bool:
        done = self.frames is None or self.embedded == len(self.frames)
        return self.settled and done and (projected or not self.grids)


@dataclass(frozen=True)
class FramePart:
    """A window's finished per-frame results: what the sink stores for frames start .. start + n - 1."""
    start: int
    times: np.ndarray
    embedding: np.ndarray
    embclip: np.ndarray | None
    motion: MotionFeatures
    flow: PackedStacks | None = None   # None: motion.flow_stack stored at full precision (dense runs)
    embedded_at: np.ndarray | None = None  # the frames (of this window's) with embeddings; None: every one


class FeatureSink(Protocol):
    def stored_projection(self) -> ChannelProjection | None: ...

    def keep_projection(self, fitted: ChannelProjection) -> ChannelProjection:
        """Store a fitted projection; returns the one kept (a parallel run may have stored one first)."""

    def window(self, work: ClipWork, part: FramePart) -> None:
        """A window's rows, in order; kept until done (or dropped when failed)."""

    def done(self, work: ClipWork) -> None:
        """Every window was handed over; work has the times, tracks and per-frame road-user summary."""

    def failed(self, work: ClipWork) -> None: ...


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:240]}" if text else type(exc).__name__


class _DecodeFailed(Exception):
    pass


def _windows(path: str, name: str, cfg: FeaturizeConfig, budget: int, children: ChildDecoders | None):
    """The decoder's windows (from this thread's decode child, unless decoding in process); its errors,
    crashes and hangs become _DecodeFailed (another decoder may do better)."""
    args = (path, cfg.decode, cfg.objects.fps if cfg.objects else 0.0, budget, cfg.window_s,
            cfg.objects.frame_height if cfg.objects else 0)
    it = None
    try:
        while True:
            try:
                if it is None:
                    it = children.mine().windows(name, *args) if children else make_decoder(name).windows(*args)
                s = next(it)
            except StopIteration:
                return
            except Exception as exc:  # DecodeError, or a decoder's own failure (memory, a library bug)
                text = str(exc) if isinstance(exc, ChildDecodeError) else first_line(exc)
                raise _DecodeFailed(f"{Path(path).name}: {name}: {text}") from None
            yield s
    finally:
        if it is not None:
            it.close()  # a clip given up part-way: its decode child stops now, not at garbage collection


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


def stream_clip(clip: ClipSource, cfg: FeaturizeConfig, motion_device: str, input_size: int | None,
                out: queue.Queue, stop: threading.Event, children: ChildDecoders | None = None) -> None:
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
        stage = ObjectStage(cfg.objects, object_detector(cfg.objects, cfg.device, cfg.engine)) \
            if cfg.objects else None
        # decord's memory grows with the file when it decodes a long clip a window at a time (measured on a
        # 30-minute clip: RSS spikes of 7-8 GB, against a steady 2.2 GB with PyAV), and PyAV gives the same
        # frames: clips longer than a window are decoded with PyAV first.
        long_clip = (getattr(clip, "duration_s", None) or 0.0) > cfg.window_s
        names = dict.fromkeys(["pyav", cfg.decoder] if long_clip else [cfg.decoder, "pyav"])
        for path in [p for p in clip.paths if Path(p).exists()]:
            for name in names:
                work.decoder = name
                # with the cascade, detection and CLIP's choice of frames follow the clip, not its decode windows
                cascade = stage.stream() if stage is not None and stage.cascades else None
                unsettled: list[tuple] = []   # pieces waiting for the cascade's windows
                try:
                    for s in _windows(path, name, cfg, budget, children):
                        times = s.times_s  # a window's end may hold detector frames only
                        ego, piece = (None, None), None
                        if len(times):  # to CLIP before the detector runs, so that CLIP need not wait for it
                            with _failing_clip(path):   # with the cascade, CLIP's frames wait for its windows
                                dense = input_size and cascade is None
                                frames = to_model_input(s.frames, input_size) if dense else None
                                motion = motion_in_batches(s.frames, s.prev_frames, s.prev_dt_s, cfg.motion,
                                                           device=motion_device)
                            work._times.append(times)
                            work._epipoles.append(motion.epipole)
                            ego = (times, motion.ego)   # the cascade's ego triggers (hard brake, swerve, jolt)
                            piece = Piece(work, frames, work.frames, times, motion, settled=cascade is None)
                            _put(out, piece, stop)
                            work.frames += len(times)
                            if cascade is not None:   # (its frames, and the time of the clip's frame before)
                                unsettled.append((piece, s.frames, work._times[-2][-1] if len(work._times) > 1
                                                  else None))
                            del frames, motion
                        if stage is not None and (len(s.extra_times_s) or cascade is not None):
                            with _failing_clip(path):
                                if cascade is None:   # dense: every detector frame
                                    _detected(work, s.extra_times_s, stage.detect(s.extra_frames),
                                              stage.signatures(s.extra_frames))
                                else:
                                    _detected(work, *cascade.feed(_extra(s), s.extra_times_s, *ego))
                            work._grid_frames += len(s.extra_times_s)
                        if cascade is not None:
                            with _failing_clip(path):
                                unsettled = _settle_up_to(unsettled, cascade, stage, input_size,
                                                          cascade.settled_until())
                        del s, piece
                    if cascade is not None:   # the clip's end: every window known
                        with _failing_clip(path):
                            _detected(work, *cascade.feed(NO_FRAMES, np.zeros(0), last=True))
                            unsettled = _settle_up_to(unsettled, cascade, stage, input_size, np.inf)
                except _DecodeFailed as exc:
                    work.error = str(exc)
                    if work.frames:  # windows already went to CLIP: no second decoder for this clip
                        work.error = f"{work.error} (part-way, after {work.frames} frames)"
                        return
                    continue
                work.times = np.concatenate(work._times)
                if stage is not None:
                    times = np.concatenate(work._object_times) if work._object_times else np.zeros(0)
                    epipole = None if any(e is None for e in work._epipoles) else np.concatenate(work._epipoles)
                    signatures = np.concatenate(work._signatures) if work._signatures else None
                    work.objects = stage.track(work._detections, times, epipole, signatures, work._grid_frames)
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
        work._epipoles, work._detections, work._signatures = [], [], []
        if not stop.is_set():
            _put(out, work, stop)


NO_FRAMES = np.zeros((0, 1, 1, 3), np.uint8)   # an empty stack of frames


def _extra(s) -> np.ndarray:
    """A decode window's detector frames (none: an empty stack, so that the cascade still reads its motion)."""
    return s.extra_frames if s.extra_frames is not None and len(s.extra_times_s) else NO_FRAMES


def _detected(work: ClipWork, times: np.ndarray, dets: list, signatures) -> None:
    """Detector frames of the clip whose detections are final, in time order, for tracking at the clip's end."""
    work._detections += dets
    work._object_times.append(np.asarray(times, np.float64))
    if signatures is not None and len(times):
        work._signatures.append(signatures)


def _settle_up_to(unsettled: list, cascade, stage: ObjectStage, input_size: int | None, until: float) -> list:
    """Settle, in order, the pieces whose frames no trigger still to come can reach (the clip's end: all)."""
    while unsettled and unsettled[0][0].times[-1] <= until:
        piece, frames, before = unsettled.pop(0)
        _settle(piece, frames, stage.spec, stage.in_windows(piece.times, cascade.triggers), input_size,
                float(piece.work._times[0][0]), before)
    return unsettled


def _settle(piece: Piece, frames: np.ndarray, spec: ObjectsSpec, inside: np.ndarray, input_size: int | None,
            origin: float, before: float | None) -> None:
    """The cascade's windows are known for this piece: its flow stacks packed (every cell inside them), and CLIP's
    frames chosen (inside them, and at spec.clip_base_fps elsewhere, counted from the clip's first frame, origin;
    before: the time of the clip's frame before the piece). Settled last: from then on the CLIP thread may take
    the piece."""
    piece.flow = pack_stacks(piece.motion.flow_stack, inside, spec.coarse_stack)
    if input_size:
        keep = inside.copy()
        keep[base_indices(piece.times, spec.clip_base_fps, origin, before)] = True
        piece.keep = np.flatnonzero(keep)
        piece.frames = to_model_input(frames[piece.keep], input_size)
    piece.settled = True


class _ClipFailed(Exception):
    pass


@contextmanager
def _failing_clip(path: str):
    """A stage's failure on this clip's frames fails the clip (named), never the batch."""
    try:
        yield
    except Exception as exc:
        raise _ClipFailed(f"{Path(path).name}: featurize failed on this clip: {first_line(exc)}") from None


class BatchFeaturizer:
    """Runs clips through decode -> motion/objects -> CLIP, handing each finished clip to the sink.

    Clips finish in the order given, and the EmbCLIP projection is fitted on the first frames in that
    order, whatever the decode threads' timing."""

    def __init__(self, cfg: FeaturizeConfig, model: LoadedClip | None, sink: FeatureSink):
        """model None: a feature set without the CLIP stage (frames carry empty embeddings)."""
        self.cfg, self.model, self.sink = cfg, model, sink
        self.motion_device = (str(model.device) if model else str(resolve_device(cfg.device))) \
            if cfg.motion.flow == "torch" else "cpu"
        self.projection = sink.stored_projection()
        self.ready: deque[Piece] = deque()      # windows decoded, waiting for CLIP
        self.open: deque[ClipWork] = deque()    # clips in order, not yet handed to the sink

    def run(self, clips: list[ClipSource]) -> None:
        workers = max(1, self.cfg.decode_workers)
        pool, stop = ThreadPoolExecutor(workers), threading.Event()
        self.children = None if self.cfg.decode_in_process else self._children()
        try:
            self._run(clips, pool, stop, workers)
        finally:
            stop.set()  # if the sink or CLIP raised: decode threads stop instead of waiting for room
            pool.shutdown(wait=True, cancel_futures=True)
            if self.children:
                self.children.close()

    def _children(self) -> ChildDecoders | None:
        if can_start_children():
            return ChildDecoders(self.cfg.decode_timeout_s)
        warnings.warn("decoding in this process: it is daemonic and may not start decode children, so a decoder "
                      "crash ends the batch (for a Dask worker, set DASK_DISTRIBUTED__WORKER__DAEMON=False)",
                      stacklevel=2)
        return None

    def _run(self, clips: list[ClipSource], pool: ThreadPoolExecutor, stop: threading.Event, workers: int) -> None:
        inflight: deque[queue.Queue] = deque()
        todo = deque(clips)
        while todo or inflight:
            while todo and len(inflight) < 2 * workers:
                q: queue.Queue = queue.Queue(maxsize=2)  # a clip runs at most two windows ahead of CLIP
                pool.submit(stream_clip, todo.popleft(), self.cfg, self.motion_device,
                            self.model.image_size if self.model else None, q, stop, self.children)
                inflight.append(q)
            item = inflight[0].get()
            if isinstance(item, Piece):
                if not self.open or self.open[-1] is not item.work:
                    self.open.append(item.work)
                item.work.pieces.append(item)
                if self.model is None:  # nothing to embed: the window is finished as it is
                    item.embeddings.append(np.zeros((len(item.times), 0), np.float32))
                    item.frames = None
                else:
                    self.ready.append(item)
            else:
                inflight.popleft()
                if item.error:
                    self.ready = deque(p for p in self.ready if p.work is not item)
                    if item in self.open:
                        self.open.remove(item)
                    item.pieces.clear()
                    self.sink.failed(item)
                    continue
                item.ended = True  # set here, in order after its windows: only now may it go to the sink
                if item not in self.open:
                    self.open.append(item)
            self._embed(final=False)
        self._embed(final=True)

    def _settled(self):
        """The windows waiting for CLIP, in order, up to the first whose frames are not chosen yet: batches are
        taken in clip order, so that the EmbCLIP projection is fitted on the same first frames in every run."""
        for p in self.ready:
            if not p.settled:
                return
            yield p

    def _embed(self, final: bool) -> None:
        while True:
            pending = sum(p.to_embed() for p in self._settled())
            if pending == 0 or (pending < self.cfg.batch_size and not final):
                break
            self._embed_one_batch()
            while self.ready and self.ready[0].settled and self.ready[0].to_embed() == 0:
                self.ready.popleft().frames = None  # free the pixels early
        if self.model is not None and self.model.has_grid and self.projection is None:
            self._fit_projection(final)
        projected = self.projection is not None
        for w in self.open:  # each clip's finished windows go to the sink in order, as they finish
            while w.pieces and w.pieces[0].finished(projected):
                p = w.pieces.popleft()
                self.sink.window(w, FramePart(p.start, p.times, _joined(p.embeddings),
                                              np.concatenate(p.embclips) if p.embclips else None, p.motion, p.flow,
                                              p.keep))
        while self.open and self.open[0].ended and not self.open[0].pieces:
            self.sink.done(self.open.popleft())

    def _embed_one_batch(self) -> None:
        """One CLIP batch, taken across windows (and clips) in order."""
        take, parts = self.cfg.batch_size, []
        for p in self._settled():
            k = min(take, p.to_embed())
            if k:
                parts.append((p, p.embedded, p.embedded + k))
                take -= k
            if take == 0:
                break
        emb, grid = embed_frames(self.model, np.concatenate([p.frames[a:b] for p, a, b in parts]))
        off = 0
        for p, a, b in parts:
            p.embeddings.append(emb[off:off + b - a])
            if grid is not None:
                g = grid[off:off + b - a]
                if self.projection is not None:
                    p.embclips.append(self.projection.apply(g))
                else:
                    p.grids.append(g)
            p.embedded = b
            off += b - a

    def _fit_projection(self, final: bool) -> None:
        """Fit the EmbCLIP projection on the first frames embedded (fewer when nothing more is coming),
        then project the grids held until now."""
        waiting = [p for w in self.open for p in w.pieces if p.grids]
        seen = sum(len(g) for p in waiting for g in p.grids)
        if not waiting or (seen < self.cfg.projection_frames and not (final and not self.ready)):
            return
        grids = np.concatenate([g for p in waiting for g in p.grids])[: max(self.cfg.projection_frames, 1)]
        self.projection = self.sink.keep_projection(fit_projection(grids, self.cfg.clip.embclip_channels))
        for p in waiting:
            p.embclips = [self.projection.apply(g) for g in p.grids] + p.embclips
            p.grids = []


def _joined(embeddings: list[np.ndarray]) -> np.ndarray:
    """A window's embeddings in one array (none embedded when CLIP chose none of its frames)."""
    return np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32)


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
