"""Featurize flow: the batch featurizer (pipeline/featurize_batch.py) wired to the catalog.

A clip's rows are written in one transaction, so a killed run leaves no half-written clip, and the
next run computes only what is missing.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from catalog import Catalog, default_db_path
from catalog.claims import ClaimHeartbeat, ClaimOwner, claim_clips
from catalog.features import (PendingClip, clips_needing_features, load_projection, record_feature_failure,
                              register_feature_set, save_projection, store_spilled_clip)
from catalog.merge import merge_staged
from catalog.spill import ClipSpill, SpillFolder
from catalog.staging import Staging
from flows.featurize_cluster import featurize_on_cluster
from flows.lineage import tracked_run
from flows.progress import Progress
from pipeline.embed import ChannelProjection
from pipeline.featurize_batch import BatchFeaturizer, ClipWork, FramePart, projection_lead
from pipeline.featurize_config import (FeaturizeConfig, clip_model, device_name, feature_set_identity,
                                       object_detector, with_available_clip)

from pipeline.featurize_options import FeaturizeOptions, Spread
from contracts.settings import settings

@dataclass
class FeaturizeSummary:
    run_id: str | None = None
    feature_set_id: str = ""
    clips: int = 0
    done: int = 0
    failed: int = 0
    frames: int = 0
    seconds: float = 0.0
    cluster: dict = field(default_factory=dict)   # spread over workers: shards merged, where the time went
    failures: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("failures", "run_id")}


@dataclass
class CatalogSink:
    """Where a batch's clips go in the single-writer setup: each window's rows spilled to local Parquet as
    they come, then the clip stored in one transaction; the feature set's projection kept in
    `feature_projections`."""
    catalog: Catalog
    fs_id: str
    meta: dict
    spill: SpillFolder
    progress: Progress | None = None
    results: list[tuple[str, str | None, int]] = field(default_factory=list)
    _clips: dict[str, ClipSpill] = field(default_factory=dict)

    def stored_projection(self) -> ChannelProjection | None:
        return _stored_projection(self.catalog, self.fs_id)

    def keep_projection(self, fitted: ChannelProjection) -> ChannelProjection:
        with self.catalog.write() as con:
            save_projection(con, self.fs_id, fitted.mean, fitted.matrix, fitted.fitted_on_frames)
        return self.stored_projection()   # a parallel run may have stored one first: use that

    def window(self, work: ClipWork, part: FramePart) -> None:
        clip = self._clips.get(work.clip.clip_id) or self._clips.setdefault(
            work.clip.clip_id, self.spill.clip(work.clip.clip_id, self.fs_id))
        clip.add(part.start, part.times, part.embedding, part.embclip, part.motion)

    def done(self, work: ClipWork) -> None:
        spill = self._clips.pop(work.clip.clip_id)
        with self.catalog.write() as con:
            store_spilled_clip(con, spill, len(work.times), {**self.meta, "decoder": work.decoder,
                                                             "seconds": work.seconds},
                               work.objects, work.object_summary)
        spill.remove()
        self._count(work.clip.clip_id, None, len(work.times))

    def failed(self, work: ClipWork) -> None:
        if spill := self._clips.pop(work.clip.clip_id, None):
            spill.remove()
        with self.catalog.write() as con:
            record_feature_failure(con, work.clip.clip_id, self.fs_id, work.error, self.meta)
        self._count(work.clip.clip_id, work.error, 0)

    def _count(self, clip_id: str, error: str | None, frames: int) -> None:
        self.results.append((clip_id, error, frames))
        if self.progress:
            self.progress.advance(1, **({"frames": frames} if frames else {}))


def featurize_batch(db: str, clips: list[PendingClip], cfg: FeaturizeConfig, fs_id: str,
                    progress: Progress | None = None) -> list[tuple[str, str | None, int]]:
    """Featurize these clips into the catalog; returns (clip_id, error or None, frames) per clip."""
    model = clip_model(cfg.clip, cfg.device, cfg.engine)
    spill = SpillFolder.beside(db)
    try:
        sink = CatalogSink(Catalog(db), fs_id, {"decoder": cfg.decoder, "device": device_name(cfg, model)}, spill,
                           progress)
        BatchFeaturizer(cfg, model, sink).run(clips)
    finally:
        spill.remove()
    return sink.results


featurize_batch_task = task(featurize_batch, name="featurize-batch", cache_policy=NO_CACHE)


def run_featurize(db: str | None = None, cfg: FeaturizeConfig = FeaturizeConfig(), use_prefect: bool = False,
                  show_progress: bool = False, chunk: int = 8, run_chunk=None,
                  spread: Spread | None = None, log=None) -> FeaturizeSummary:
    """Featurize every pending clip, `chunk` clips at a time, each chunk claimed just before it runs (so
    that two runs on one catalog share the clips instead of both computing each).

    run_chunk(db, clips, cfg, fs_id) -> results replaces the default chunk task (the pipeline's is cached).
    spread: chunks go to Dask workers as Parquet shards that this process merges (needs use_prefect).
    log: where a note goes when the CLIP stage is left out for want of weights."""
    db = db or default_db_path()
    if spread and not use_prefect:
        raise ValueError("--workers and --cluster run through Prefect's Dask task runner: drop --direct")
    if run_chunk is not None:
        call = lambda t, db, clips, cfg, fs_id, bar: run_chunk(db, clips, cfg, fs_id)  # noqa: E731
    else:
        call = (lambda t, *a: t(*a)) if use_prefect else (lambda t, *a: t.fn(*a))
    cfg, note = with_available_clip(cfg)
    if note:
        (log or (lambda text: print(text, file=sys.stderr)))(note)
    fs_id, name, config = feature_set_identity(cfg)
    catalog = Catalog(db)
    model = clip_model(cfg.clip, cfg.device, cfg.engine)  # fail early and clearly when weights cannot be had
    if cfg.objects is not None:
        object_detector(cfg.objects, cfg.device, cfg.engine)
    params = {"feature_set": fs_id, "name": name, **asdict(cfg), "spread": asdict(spread) if spread else None}
    with tracked_run(catalog, "featurize", params) as run:
        with catalog.write() as con:
            register_feature_set(con, fs_id, name, config, model.embed_dim if model else 0,
                                 cfg.clip.embclip_channels * 49 if model and model.has_grid else None,
                                 bool(cfg.clip and cfg.clip.untrained))
        staging = (Staging(spread.staging) if spread.staging else Staging.beside(db)) if spread else None
        if staging:  # a killed run's finished shards go in; folders dead workers left unfinished go
            leftovers = merge_staged(catalog, staging, fs_id)
            staging.sweep_unfinished(fs_id)
        with catalog.read() as con:
            pending = clips_needing_features(con, fs_id, cfg.limit, cfg.retry_failed)
        summary = FeaturizeSummary(run_id=run.id, feature_set_id=fs_id)
        owner, lease_s = ClaimOwner.this_process(), settings().claim_lease_s
        claims = ClaimHeartbeat(catalog, owner, lease_s)

        def claim(candidates: list[PendingClip], n: int) -> list[PendingClip]:
            """The next n clips no other run holds (another featurize on this catalog takes other clips)."""
            with catalog.write() as con:
                ids = set(claim_clips(con, fs_id, owner, [c.clip_id for c in candidates], n, lease_s,
                                      cfg.retry_failed))
            summary.clips += len(ids)
            return [c for c in candidates if c.clip_id in ids]

        def needs_projection() -> bool:
            return model is not None and model.has_grid and _stored_projection(catalog, fs_id) is None

        t0 = time.perf_counter()
        with claims, Progress("featurize", total=len(pending), unit="clip", enabled=show_progress) as bar:
            def tally(results):
                for clip_id, error, frames in results:
                    if error:
                        summary.failed += 1
                        summary.failures.append((clip_id, error))
                    else:
                        summary.done += 1
                        summary.frames += frames

            t_local = time.perf_counter()
            if spread:  # the cluster takes its share at once: claim all that is free
                pending = claim(pending, len(pending))
                # The projection is fitted here, on the first frames, as a single process would.
                lead = projection_lead([c.duration_s for c in pending], cfg.decode.sample_fps,
                                       cfg.projection_frames) if needs_projection() else 0
                local, remote = pending[:lead], pending[lead:]
                if local:  # one batch: the projection is fitted on all of its frames
                    tally(call(featurize_batch_task, db, local, cfg, fs_id, bar))
            else:  # a chunk at a time, claimed just before it runs; the first covers the projection's frames
                todo = list(pending)
                first = projection_lead([c.duration_s for c in pending], cfg.decode.sample_fps,
                                        cfg.projection_frames) if needs_projection() else 0
                while todo and (mine := claim(todo, max(chunk, first))):
                    first = 0
                    taken = {c.clip_id for c in mine}
                    todo = [c for c in todo if c.clip_id not in taken]
                    tally(call(featurize_batch_task, db, mine, cfg, fs_id, bar))
            t_local = time.perf_counter() - t_local
            if spread:
                cluster = featurize_on_cluster(catalog, staging, fs_id, remote, cfg, spread,
                                               _stored_projection(catalog, fs_id),
                                               on_merged=lambda r: (tally(r), bar.advance(len(r))))
                summary.failures += cluster.lost
                summary.failed += len(cluster.lost)
                summary.cluster = {**cluster.timing(), "leftover_shards": leftovers.shards,
                                   "rejected_leftovers": leftovers.rejected,
                                   "driver_clips": len(local), "driver_s": round(t_local, 3)}
        summary.seconds = round(time.perf_counter() - t0, 3)
        run.counts = summary.counts()
    return summary


def _stored_projection(catalog: Catalog, fs_id: str) -> ChannelProjection | None:
    with catalog.read() as con:
        stored = load_projection(con, fs_id)
    return ChannelProjection(*stored) if stored else None


@flow(name="featurize", log_prints=True)
def featurize_flow(db: str | None = None, options: FeaturizeOptions = FeaturizeOptions(),
                   progress: bool = False) -> dict:
    """Compute motion and CLIP/EmbCLIP features (and, with a detector, tracked road users) for every
    ingested clip that lacks them.

    progress: a progress bar on the terminal that runs the flow in-process (the CLI)."""
    summary = run_featurize(db, options.config(), use_prefect=True, show_progress=progress, spread=options.spread(),
                            chunk=options.chunk_clips)
    print(f"featurize: {summary.counts()}")
    return {**summary.counts(), "run_id": summary.run_id, "failures": summary.failures}
