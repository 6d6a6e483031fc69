"""Featurize: the batch featurizer (pipeline/featurize_batch.py) wired to the catalog.

A clip's rows are written in one transaction, so a killed run leaves no half-written clip, and the
next run computes only what is missing.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace

from catalog import Catalog, default_db_path
from catalog.claims import ClaimHeartbeat, ClaimOwner, claim_clips
from catalog.features import PendingClip, clips_needing_features, register_feature_set
from catalog.merge import merge_staged
from catalog.sinks import FeatureSink, stored_projection
from catalog.spill import SpillFolder
from catalog.staging import Staging
from contracts.settings import settings
from pipeline.featurize_config import FeaturizeConfig, feature_set_identity
from pipeline.featurize_options import Spread
from steps.executor import Executor, InProcess, unit
from steps.lineage import tracked_run
from steps.progress import Progress


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


@unit("featurize-batch")
def featurize_batch(db: str, clips: list[PendingClip], cfg: FeaturizeConfig, fs_id: str,
                    progress: Progress | None = None) -> list[tuple[str, str | None, int]]:
    """Featurize these clips into the catalog; returns (clip_id, error or None, frames) per clip."""
    from pipeline.featurize_batch import BatchFeaturizer
    from pipeline.featurize_models import clip_model, device_name

    model = clip_model(cfg.clip, cfg.device, cfg.engine)
    spill = SpillFolder.beside(db)
    try:
        sink = FeatureSink(fs_id, {"decoder": cfg.decoder, "device": device_name(cfg, model)}, spill,
                           catalog=Catalog(db), on_clip=progress.clip_ended if progress else None)
        BatchFeaturizer(cfg, model, sink).run(clips)
    finally:
        spill.remove()
    return sink.results


def run_featurize(db: str | None = None, cfg: FeaturizeConfig = FeaturizeConfig(), executor: Executor = InProcess(),
                  show_progress: bool = False, chunk: int = 8, spread: Spread | None = None,
                  log=None) -> FeaturizeSummary:
    """Featurize every pending clip, `chunk` clips at a time, each chunk claimed just before it runs (so
    that two runs on one catalog share the clips instead of both computing each).

    executor: how each chunk runs (featurize_batch): in this process, or as a Prefect task.
    spread: chunks go to Dask workers as Parquet shards that this process merges.
    log: where a note goes when the CLIP stage is left out for want of weights."""
    db = db or default_db_path()
    catalog = Catalog(db)
    anything, fs_id = _pending(catalog, cfg)
    if not anything:   # say so at once, with no model loaded (the run is recorded)
        summary = FeaturizeSummary(feature_set_id=fs_id)
        with tracked_run(catalog, "featurize", {"feature_set": summary.feature_set_id, "nothing_to_do": True}) as run:
            summary.run_id, run.counts = run.id, summary.counts()
        return summary
    # Only now the networks' libraries (seconds to import): a run with nothing to do never pays for them.
    from pipeline.featurize_batch import projection_lead
    from pipeline.featurize_models import clip_model, object_detector, with_available_clip

    call = executor.run
    cfg, note = with_available_clip(cfg)
    if note:
        (log or (lambda text: print(text, file=sys.stderr)))(note)
    fs_id, name, config = feature_set_identity(cfg)
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
            return model is not None and model.has_grid and stored_projection(catalog, fs_id) is None

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
                    tally(call(featurize_batch, db, local, cfg, fs_id, bar))
            else:  # a chunk at a time, claimed just before it runs; the first covers the projection's frames
                todo = list(pending)
                first = projection_lead([c.duration_s for c in pending], cfg.decode.sample_fps,
                                        cfg.projection_frames) if needs_projection() else 0
                while todo and (mine := claim(todo, max(chunk, first))):
                    first = 0
                    taken = {c.clip_id for c in mine}
                    todo = [c for c in todo if c.clip_id not in taken]
                    tally(call(featurize_batch, db, mine, cfg, fs_id, bar))
            t_local = time.perf_counter() - t_local
            if spread:
                from steps.featurize_cluster import featurize_on_cluster  # Dask's import: only when spread
                cluster = featurize_on_cluster(catalog, staging, fs_id, remote, cfg, spread,
                                               stored_projection(catalog, fs_id),
                                               on_merged=lambda r: (tally(r), bar.advance(len(r))))
                summary.failures += cluster.lost
                summary.failed += len(cluster.lost)
                summary.cluster = {**cluster.timing(), "leftover_shards": leftovers.shards,
                                   "rejected_leftovers": leftovers.rejected,
                                   "driver_clips": len(local), "driver_s": round(t_local, 3)}
        summary.seconds = round(time.perf_counter() - t0, 3)
        run.counts = summary.counts()
    return summary


def _pending(catalog: Catalog, cfg: FeaturizeConfig) -> tuple[bool, str]:
    """(whether a clip lacks features in the feature set this run would make, that feature set's id).

    With CLIP, or without it when the run may leave CLIP out for want of weights (known only once it
    tries to load them)."""
    configs = [cfg] + ([replace(cfg, clip=None)] if cfg.clip is not None and cfg.clip_if_available
                       and cfg.objects is not None else [])
    ids = [feature_set_identity(c)[0] for c in configs]
    with catalog.read() as con:
        return any(clips_needing_features(con, fs_id, 1, cfg.retry_failed) for fs_id in ids), ids[0]
