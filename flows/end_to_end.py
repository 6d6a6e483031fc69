"""The end-to-end flow (Prefect flow "pipeline"): ingest, then featurize, then score, as Prefect tasks.

(Not named flows/pipeline.py: Prefect imports a deployment's entrypoint file
under its stem, and a module called `pipeline` would shadow the package.)

- Retries: chunk tasks retry on transient errors (a catalog held locked too
  long, a network blip), not on bad configuration.
- Caching: featurize and score chunks are cached by the catalog's identity,
  the configuration (feature set, head version) and the content hashes of their
  clips, so a re-run (or a retried flow run) skips chunks already done. The
  catalog stays the source of truth: each stage also asks it what is missing.
- The GPU: featurize and score chunks take the one slot of the `nearmiss-gpu`
  global concurrency limit, so parallel runs never share the accelerator.
- A summary (new, skipped and failed clips, features, incidents found) is
  printed to the flow log and stored in `runs`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import timedelta

from prefect import flow, task

from catalog import Catalog, default_db_path
from catalog.features import features_stored
from catalog.heads import predictions_stored
from flows.orchestration import catalog_identity, chunk_key, ensure_gpu_limit, gpu_slot, retry_transient
from pipeline.featurize_config import FeaturizeConfig
from pipeline.featurize_options import FeaturizeOptions, Spread
from pipeline.specs import IngestConfig
from steps.executor import PrefectTasks
from steps.featurize import featurize_batch, run_featurize
from steps.ingest import run_ingest
from steps.lineage import tracked_run
from steps.options import IngestOptions
from steps.score import run_score, score_chunk

CACHE_FOR = timedelta(days=30)


@dataclass
class PipelineSummary:
    run_id: str | None = None
    files: int = 0
    new: int = 0
    skipped: int = 0            # unchanged paths and duplicate bytes
    still_writing: int = 0      # modified within the settle time: the next run takes them
    failed: int = 0             # files that are not readable video (errors are on their clips rows)
    featurized: int = 0
    featurize_failed: int = 0
    scored: dict = field(default_factory=dict)   # head version -> clips scored
    incidents: int = 0

    def counts(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "run_id"}


def _featurize_key(ctx, p) -> str:
    return chunk_key("featurize", p["catalog_id"], p["fs_id"], ids=[c.clip_id for c in p["clips"]])


def _score_key(ctx, p) -> str:
    return chunk_key("score", p["catalog_id"], p["row"].ref, p["row"].weights_sha256, ids=p["clip_ids"])


@task(name="featurize-chunk", cache_key_fn=_featurize_key, cache_expiration=CACHE_FOR, persist_result=True,
      retries=2, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def featurize_chunk(db: str, clips: list, cfg: FeaturizeConfig, fs_id: str, catalog_id: str) -> list:
    with gpu_slot():
        return featurize_batch(db, clips, cfg, fs_id)


@task(name="score-chunk", cache_key_fn=_score_key, cache_expiration=CACHE_FOR, persist_result=True,
      retries=2, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def score_chunk_cached(db: str, row, head, clip_ids: list[str], run_id: str | None, catalog_id: str) -> tuple[int, int]:
    with gpu_slot():
        return score_chunk(db, row, head, clip_ids, run_id)


def featurize_cached(db: str, clips: list, cfg: FeaturizeConfig, fs_id: str, catalog_id: str) -> list:
    """The cached chunk task, trusted only when the catalog agrees (someone may have deleted rows since)."""
    results = featurize_chunk(db, clips, cfg, fs_id, catalog_id)
    with Catalog(db).read() as con:
        stored = features_stored(con, fs_id, [c.clip_id for c in clips])
    if stored < len(clips):
        results = featurize_chunk.with_options(refresh_cache=True)(db, clips, cfg, fs_id, catalog_id)
    return results


def score_cached(db: str, row, head, ids: list[str], run_id: str | None, catalog_id: str) -> tuple[int, int]:
    out = score_chunk_cached(db, row, head, ids, run_id, catalog_id)
    with Catalog(db).read() as con:
        stored = predictions_stored(con, row.name, row.version, ids)
    if stored < len(ids):
        out = score_chunk_cached.with_options(refresh_cache=True)(db, row, head, ids, run_id, catalog_id)
    return out


class PipelineTasks(PrefectTasks):
    """Prefect tasks, with featurize and score chunks cached by the catalog's identity and content and
    holding the GPU slot."""

    def __init__(self, catalog_id: str):
        super().__init__()
        self.catalog_id = catalog_id

    def run(self, fn, *args, **kwargs):
        if fn is featurize_batch:   # (db, clips, cfg, fs_id, progress)
            return featurize_cached(*args[:4], self.catalog_id)
        if fn is score_chunk:       # (db, row, head, clip_ids, run_id)
            return score_cached(*args, self.catalog_id)
        return super().run(fn, *args, **kwargs)


def run_pipeline(paths: list[str], db: str | None = None, labels: str | None = None,
                 ingest: IngestConfig = IngestConfig(), features: FeaturizeConfig = FeaturizeConfig(),
                 heads: list[str] | None = None, chunk: int = 32, spread: Spread | None = None) -> PipelineSummary:
    db = db or default_db_path()
    catalog = Catalog(db)
    ensure_gpu_limit()
    params = {"paths": paths, "labels": labels, "heads": heads, "features": asdict(features)}
    with tracked_run(catalog, "pipeline", params) as run:
        s = PipelineSummary(run_id=run.id)
        ing = run_ingest(paths, db=db, labels=labels, cfg=ingest, executor=PrefectTasks())
        s.files, s.new, s.failed = ing.files, ing.new, ing.failed + ing.known_failed
        s.skipped = ing.unchanged + ing.duplicate
        s.still_writing = ing.still_writing
        tasks = PipelineTasks(catalog_identity(db))
        fz = run_featurize(db, features, executor=tasks, chunk=chunk, spread=spread)
        s.featurized, s.featurize_failed = fz.done, fz.failed
        scored = run_score(db, heads, require_heads=False, executor=tasks)
        s.scored = {r.model: r.clips for r in scored}
        s.incidents = sum(r.incidents for r in scored)
        run.counts = s.counts()
    print(f"pipeline: {s.files} files: {s.new} new, {s.skipped} skipped, {s.failed} failed, "
          f"{s.still_writing} still being written; "
          f"{s.featurized} clips featurized ({s.featurize_failed} failed); "
          + (", ".join(f"{m} scored {n}" for m, n in s.scored.items()) or "no trained heads to score with")
          + f"; {s.incidents} incidents found")
    return s


@flow(name="pipeline", log_prints=True)
def pipeline_flow(paths: list[str], db: str | None = None, labels: str | None = None,
                  ingest: IngestOptions = IngestOptions(), featurize: FeaturizeOptions = FeaturizeOptions(),
                  heads: list[str] | None = None) -> dict:
    """Ingest new clips from `paths`, featurize what lacks features, score with the newest heads."""
    s = run_pipeline(paths, db, labels, ingest=ingest.config(), features=featurize.config(),
                     heads=heads, spread=featurize.spread())
    return {**s.counts(), "run_id": s.run_id}
