"""Every flow run leaves a row in `runs`: parameters, counts, outcome."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from catalog import Catalog
from catalog.runs import finish_run, start_run


@dataclass
class RunHandle:
    id: str
    counts: dict = field(default_factory=dict)


def _prefect_flow_run_id() -> str | None:
    try:
        from prefect.runtime import flow_run
        return str(flow_run.id) if flow_run.id else None
    except Exception:
        return None


@contextmanager
def tracked_run(catalog: Catalog, flow: str, parameters: dict) -> Iterator[RunHandle]:
    with catalog.write() as con:
        run = RunHandle(start_run(con, flow, parameters, _prefect_flow_run_id()))
    try:
        yield run
    except BaseException as exc:
        with catalog.write() as con:
            finish_run(con, run.id, "failed", run.counts, f"{type(exc).__name__}: {exc}")
        raise
    with catalog.write() as con:
        finish_run(con, run.id, "completed", run.counts)
