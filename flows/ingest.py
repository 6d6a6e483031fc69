"""The `ingest` flow: steps/ingest.py with each batch of files a Prefect task."""
from __future__ import annotations

from prefect import flow

from steps.executor import PrefectTasks
from steps.ingest import run_ingest
from steps.options import IngestOptions


@flow(name="ingest", log_prints=True)
def ingest_flow(paths: list[str], db: str | None = None, labels: str | None = None,
                options: IngestOptions = IngestOptions(), progress: bool = False) -> dict:
    """Ingest video files, folders or globs into the catalog (idempotent; safe to re-run after a crash).

    progress: a progress bar on the terminal that runs the flow in-process (the CLI)."""
    summary = run_ingest(paths, db=db, labels=labels, cfg=options.config(), executor=PrefectTasks(),
                         show_progress=progress)
    print(f"ingest: {summary.counts()}")
    return {**summary.counts(), "run_id": summary.run_id, "failures": summary.failures}
