"""Featurize: decode each clip once, compute motion and CLIP/EmbCLIP features, store them.

Decode and motion run on worker threads (native code releases the GIL);
CLIP runs on the main thread in batches that mix frames from several clips.
A clip's rows are written in one transaction, so a killed run leaves no
half-written clip, and the next run computes only what is missing.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from catalog import Catalog, default_db_path
from catalog.features import (PendingClip, clips_needing_features, load_projection, record_feature_failure,
                              register_feature_set, save_projection, write_clip_features)
from flows.lineage import tracked_run
from flows.progress import Progress
from pipeline.decode import make_decoder
from pipeline.embed import (ChannelProjection, ClipSpec, LoadedClip, embed_frames, fit_projection, load_clip,
                            resolve_device, to_model_input)
from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
from pipeline.featurize_config import detector as _detector
from pipeline.featurize_options import FeaturizeOptions
from pipeline.motion import motion_features
from pipeline.objects import ObjectStage, frame_summary
from pipeline.settings import settings



@dataclass
class FeaturizeSummary:
    run_id: str | None = None
    feature_set_id: str = ""
    clips: int = 0
    done: int = 0
    failed: int = 0
    frames: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("failures", "run_id")}


@lru_cache(maxsize=2)
def _model(spec: ClipSpec, device: str) -> LoadedClip:
    return load_clip(spec, resolve_device(device))


@dataclass
class _Work:
    clip: PendingClip
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


def _decode_and_move(pc: PendingClip, cfg: FeaturizeConfig, motion_device: str, input_size: int) -> _Work:
    """Decode, motion and objects for one clip. Whatever goes wrong stays with this clip: the error
    names the file, and the batch goes on. A clip decord cannot decode is tried again with PyAV."""
    t0 = time.perf_counter()
    work = _Work(pc)
    last_error = "no readable path: the file was moved or deleted since ingest"
    budget = int(settings().memory_budget_gb * (1 << 30))
    for path in pc.paths:
        if not Path(path).exists():
            continue
        for name in dict.fromkeys([cfg.decoder, "pyav"]):
            try:
                s = make_decoder(name).decode(path, cfg.decode, extra_fps=cfg.objects.fps if cfg.objects else 0.0,
                                              max_bytes=budget)
            except Exception as exc:  # DecodeError, or a decoder's own failure (memory, a library bug)
                last_error = f"{Path(path).name}: {name}: {_first_line(exc)}"
                continue
            work.decoder = name
            try:
                work.times, work.frames = s.times_s, to_model_input(s.frames, input_size)
                work.motion = motion_features(s.frames, s.prev_frames, s.prev_dt_s, cfg.motion, device=motion_device)
                if cfg.objects is not None:
                    stage = ObjectStage(cfg.objects, _detector(cfg.objects.detector, cfg.device))
                    work.objects = stage.run(s.extra_frames, s.extra_times_s, work.motion.epipole)
                    work.object_summary = frame_summary(work.objects, s.times_s)
            except Exception as exc:
                work.error = f"{Path(path).name}: featurize failed on this clip: {_first_line(exc)}"
                return work
            work.seconds = time.perf_counter() - t0
            return work
    work.error = last_error
    return work


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:240]}" if text else type(exc).__name__


def featurize_batch(db: str, clips: list[PendingClip], cfg: FeaturizeConfig, fs_id: str,
                    progress: Progress | None = None) -> list[tuple[str, str | None, int]]:
    """Featurize these clips; returns (clip_id, error or None, frames) per clip."""
    catalog = Catalog(db)
    model = _model(cfg.clip, cfg.device)
    device = str(model.device)
    motion_device = device if cfg.motion.flow == "torch" else "cpu"
    with catalog.read() as con:
        stored = load_projection(con, fs_id)
    projection = ChannelProjection(*stored) if stored else None
    results: list[tuple[str, str | None, int]] = []
    ready: deque[_Work] = deque()      # decoded, waiting for CLIP
    held: list[_Work] = []             # embedded, waiting for the projection to be fitted
    meta = {"decoder": cfg.decoder, "device": device}

    def finish(work: _Work) -> None:
        emb = np.concatenate(work.embeddings)
        grid = np.concatenate(work.grids) if model.has_grid else None
        with catalog.write() as con:
            write_clip_features(con, work.clip.clip_id, fs_id, work.times, emb,
                                projection.apply(grid) if grid is not None else None, work.motion,
                                {**meta, "decoder": work.decoder, "seconds": work.seconds}, work.objects,
                                work.object_summary)
        results.append((work.clip.clip_id, None, len(work.times)))
        if progress:
            progress.advance(1, frames=len(work.times))

    def embed_ready(final: bool) -> None:
        nonlocal projection
        while ready:
            pending = sum(len(w.times) - w.embedded for w in ready)
            if pending < cfg.batch_size and not final:
                return
            # One batch, taken across clips in order.
            take, parts = cfg.batch_size, []
            for w in ready:
                k = min(take, len(w.times) - w.embedded)
                if k:
                    parts.append((w, w.embedded, w.embedded + k))
                    take -= k
                if take == 0:
                    break
            batch = np.concatenate([w.frames[a:b] for w, a, b in parts])
            emb, grid = embed_frames(model, batch)
            off = 0
            for w, a, b in parts:
                w.embeddings.append(emb[off:off + b - a])
                if grid is not None:
                    w.grids.append(grid[off:off + b - a])
                w.embedded = b
                off += b - a
            while ready and ready[0].embedded == len(ready[0].times):
                w = ready.popleft()
                w.frames = None  # free the pixels early
                held.append(w)
            if model.has_grid and projection is None:
                seen = sum(len(w.times) for w in held)
                if seen < cfg.projection_frames and not (final and not ready):
                    continue
                if held:
                    grids = np.concatenate([g for w in held for g in w.grids])[: max(cfg.projection_frames, 1)]
                    fitted = fit_projection(grids, cfg.clip.embclip_channels)
                    with catalog.write() as con:
                        save_projection(con, fs_id, fitted.mean, fitted.matrix, fitted.fitted_on_frames)
                    with catalog.read() as con:  # a parallel run may have fitted first: use the stored one
                        projection = ChannelProjection(*load_projection(con, fs_id))
            while held and (projection is not None or not model.has_grid):
                finish(held.pop(0))

    with ThreadPoolExecutor(max(1, cfg.decode_workers)) as pool:
        inflight = deque()
        queue = deque(clips)
        while queue or inflight:
            while queue and len(inflight) < 2 * max(1, cfg.decode_workers):
                pc = queue.popleft()
                inflight.append(pool.submit(_decode_and_move, pc, cfg, motion_device, model.image_size))
            work = inflight.popleft().result()
            if work.error:
                with catalog.write() as con:
                    record_feature_failure(con, work.clip.clip_id, fs_id, work.error, meta)
                results.append((work.clip.clip_id, work.error, 0))
                if progress:
                    progress.advance(1)
                continue
            ready.append(work)
            embed_ready(final=False)
        embed_ready(final=True)
    return results


featurize_batch_task = task(featurize_batch, name="featurize-batch", cache_policy=NO_CACHE)


def run_featurize(db: str | None = None, cfg: FeaturizeConfig = FeaturizeConfig(), use_prefect: bool = False,
                  show_progress: bool = False, chunk: int = 256, run_chunk=None) -> FeaturizeSummary:
    """run_chunk(db, clips, cfg, fs_id) -> results replaces the default chunk task (the pipeline's is cached)."""
    db = db or default_db_path()
    if run_chunk is not None:
        call = lambda t, db, clips, cfg, fs_id, bar: run_chunk(db, clips, cfg, fs_id)  # noqa: E731
    else:
        call = (lambda t, *a: t(*a)) if use_prefect else (lambda t, *a: t.fn(*a))
    fs_id, name, config = feature_set_identity(cfg)
    catalog = Catalog(db)
    model = _model(cfg.clip, cfg.device)  # fail early and clearly when weights cannot be had
    if cfg.objects is not None:
        _detector(cfg.objects.detector, cfg.device)
    params = {"feature_set": fs_id, "name": name, **asdict(cfg)}
    with tracked_run(catalog, "featurize", params) as run:
        with catalog.write() as con:
            register_feature_set(con, fs_id, name, config, model.embed_dim,
                                 cfg.clip.embclip_channels * 49 if model.has_grid else None, cfg.clip.untrained)
            pending = clips_needing_features(con, fs_id, cfg.limit, cfg.retry_failed)
        summary = FeaturizeSummary(run_id=run.id, feature_set_id=fs_id, clips=len(pending))
        t0 = time.perf_counter()
        with Progress("featurize", total=len(pending), unit="clip", enabled=show_progress) as bar:
            for start in range(0, len(pending), chunk):
                for clip_id, error, frames in call(featurize_batch_task, db, pending[start:start + chunk], cfg,
                                                   fs_id, bar):
                    if error:
                        summary.failed += 1
                        summary.failures.append((clip_id, error))
                    else:
                        summary.done += 1
                        summary.frames += frames
        summary.seconds = round(time.perf_counter() - t0, 3)
        run.counts = summary.counts()
    return summary


@flow(name="featurize", log_prints=True)
def featurize_flow(db: str | None = None, options: FeaturizeOptions = FeaturizeOptions(),
                   progress: bool = False) -> dict:
    """Compute motion and CLIP/EmbCLIP features (and, with a detector, tracked road users) for every
    ingested clip that lacks them.

    progress: a progress bar on the terminal that runs the flow in-process (the CLI)."""
    summary = run_featurize(db, options.config(), use_prefect=True, show_progress=progress)
    print(f"featurize: {summary.counts()}")
    return {**summary.counts(), "run_id": summary.run_id, "failures": summary.failures}
