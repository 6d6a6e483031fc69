"""Ingest: find video files, identify them by content, probe them, record them.

Bad input never stops the batch: every file ends as a clip row (status ok or
failed, with an error a person can act on). Each file is committed in its own
short transaction, so a killed run keeps what it did and the next run skips
it; unchanged paths are not even re-hashed.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from catalog import Catalog, default_db_path
from catalog.clips import clip_durations, clip_statuses, path_index, record_clip, seen_paths
from catalog.labels import LabelRow, upsert_labels
from pipeline.discover import Candidate, discover
from pipeline.examine import examine
from pipeline.isolation import IsolatedWorker
from pipeline.labels import LabelsError, check_event_within, match_labels, read_labels
from pipeline.probe import probe_video
from pipeline.specs import IngestConfig
from steps.executor import Executor, InProcess, unit
from steps.lineage import tracked_run
from steps.progress import Progress


@dataclass
class FileOutcome:
    path: str
    outcome: str                       # new | duplicate | unchanged | failed | known_failed
    clip_id: str | None = None
    error: str | None = None


@dataclass
class IngestSummary:
    run_id: str | None = None
    files: int = 0
    new: int = 0
    duplicate: int = 0
    unchanged: int = 0
    failed: int = 0
    known_failed: int = 0
    still_writing: int = 0             # modified within settle_s: taken by a later run
    labels: int = 0
    label_errors: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict:
        d = asdict(self)
        d.pop("failures")
        d.pop("run_id")
        return d


# --- units of work -----------------------------------------------------------

@unit("discover")
def discover_inputs(paths: list[str]) -> list[Candidate]:
    return discover(paths)


@unit("ingest-batch", retries=1, retry_delay_s=2)
def ingest_batch(db: str, candidates: list[Candidate], cfg: IngestConfig,
                 progress: Progress | None = None) -> list[FileOutcome]:
    catalog = Catalog(db)
    with catalog.write() as con:
        seen = seen_paths(con)
        known = clip_statuses(con)
    local = threading.local()
    workers: list[IsolatedWorker] = []
    lock = threading.Lock()

    def prober(path: str):
        if not hasattr(local, "worker"):
            local.worker = IsolatedWorker(probe_video, timeout_s=cfg.probe_timeout_s)
            with lock:
                workers.append(local.worker)
        return local.worker(path)

    outcomes: list[FileOutcome] = []
    try:
        with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
            futures = [pool.submit(examine, c, cfg, seen, known, prober) for c in candidates]
            for c, fut in zip(candidates, futures):
                row, mtime_ns, outcome = fut.result()
                prev = seen.get(c.path)
                if (row is not None and row.status == "failed" and prev is not None and prev.clip_id == row.id
                        and known.get(row.id) == ("failed", row.error)):
                    row, outcome = None, "known_failed"  # the same failure is on record already
                if outcome == "new" and row is not None and known.get(row.id, (None,))[0] == "ok":
                    outcome = "duplicate"   # the same bytes came in earlier in this batch (examined in parallel)
                if row is not None:
                    with catalog.write() as con:  # one short transaction per file
                        record_clip(con, row, mtime_ns, replace_failed=cfg.retry_failed)
                    if row.id not in known or (cfg.retry_failed and outcome in ("new", "failed")):
                        known[row.id] = (row.status, row.error)
                if outcome == "still_writing":
                    outcomes.append(FileOutcome(c.path, outcome, None, None))
                    if progress:
                        progress.advance(1)
                    continue
                outcomes.append(FileOutcome(c.path, outcome, row.id if row else seen[c.path].clip_id,
                                            row.error if row is not None and row.status == "failed" else None))
                if progress:
                    progress.advance(1)
    finally:
        for w in workers:
            w.close()
    return outcomes


@unit("apply-labels")
def apply_labels(db: str, labels_file: str) -> tuple[int, list[str]]:
    """Store validated labels for ingested clips. Returns (stored, per-row errors)."""
    path = Path(labels_file)
    entries = read_labels(path)  # raises LabelsError naming every bad row
    catalog = Catalog(db)
    source = path.name
    with catalog.write() as con:
        matched, errors = match_labels(entries, path, path_index(con), source)
        durations = clip_durations(con, [cid for _, cid in matched])
        rows = []
        for e, cid in matched:
            try:
                check_event_within(e, durations.get(cid), source)
            except LabelsError as exc:
                errors.append(str(exc))
                continue
            rows.append(LabelRow(cid, e.cls, e.event_start_s, e.event_end_s, source, e.event_peak_s))
        upsert_labels(con, rows)
    return len(rows), errors


# --- the step ------------------------------------------------------------------

def run_ingest(paths: list[str], db: str | None = None, labels: str | None = None,
               cfg: IngestConfig = IngestConfig(), executor: Executor = InProcess(),
               show_progress: bool = False) -> IngestSummary:
    """Ingest files, folders or globs; each unit of work runs through `executor` (the flow's: Prefect tasks)."""
    db = db or default_db_path()
    call = executor.run
    if labels:
        read_labels(labels)  # refuse a bad sidecar before touching anything
    params = {"paths": [str(p) for p in paths], "labels": labels, **asdict(cfg)}
    with tracked_run(Catalog(db), "ingest", params) as run:
        summary = IngestSummary(run_id=run.id)
        candidates = call(discover_inputs, [str(p) for p in paths])
        summary.files = len(candidates)
        with Progress("ingest", total=len(candidates), unit="clip", enabled=show_progress) as bar:
            for start in range(0, len(candidates), cfg.batch_size):
                chunk = candidates[start:start + cfg.batch_size]
                for o in call(ingest_batch, db, chunk, cfg, bar):
                    setattr(summary, o.outcome, getattr(summary, o.outcome) + 1)
                    if o.outcome == "failed":
                        summary.failures.append((o.path, o.error))
        if labels:
            summary.labels, summary.label_errors = call(apply_labels, db, labels)
        run.counts = summary.counts()
    return summary
