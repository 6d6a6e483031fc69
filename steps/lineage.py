"""Every flow run leaves a row in `runs`: parameters, counts, outcome.

When the outermost run of a process completes, it publishes the catalog's read
snapshot (catalog/snapshot.py) so the stock DuckDB CLI sees the new rows.
"""
from __future__ import annotations

import contextvars
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from catalog import Catalog
from catalog.runs import finish_run, start_run
from catalog.snapshot import publish_snapshot

_depth = contextvars.ContextVar("nearmiss_run_depth", default=0)


@dataclass
class RunHandle:
    id: str
    counts: dict = field(default_factory=dict)


def _prefect_flow_run_id() -> str | None:
    if "prefect" not in sys.modules:   # not in a flow run (and importing Prefect to learn that takes seconds)
        return None
    try:
        from prefect.runtime import flow_run
        return str(flow_run.id) if flow_run.id else None
    except Exception:
        return None


@contextmanager
def tracked_run(catalog: Catalog, flow: str, parameters: dict) -> Iterator[RunHandle]:
    with catalog.write() as con:
        run = RunHandle(start_run(con, flow, parameters, _prefect_flow_run_id()))
    token = _depth.set(_depth.get() + 1)
    try:
        yield run
    except BaseException as exc:
        with catalog.write() as con:
            finish_run(con, run.id, "failed", run.counts, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        _depth.reset(token)
    with catalog.write() as con:
        finish_run(con, run.id, "completed", run.counts)
    if _depth.get() == 0:
        publish_snapshot(catalog)
