"""Prefect plumbing shared by the flows: the GPU slot, retry rules, and cache keys."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

from catalog import Catalog, CatalogLocked
from catalog.runs import first_run_id

GPU_LIMIT = "nearmiss-gpu"   # a global concurrency limit with one slot: one task on the GPU at a time


def ensure_gpu_limit(slots: int = 1) -> None:
    """Create the limit on the Prefect server if it is not there; on Prefect's temporary server, free the
    slots a killed run left taken.

    Why: slot leases live in the server's memory, and a temporary server dies with its command. A run
    killed while holding the slot left the database counting it taken with no lease to expire, and every
    later pipeline run on this PREFECT_HOME waited for it forever (seen: a demo hung 20 minutes). A
    temporary server started for this process has no other holders, so its count starts from zero."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.settings import get_current_settings

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(GPU_LIMIT)
        except Exception:  # ObjectNotFound: first use on this server
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=GPU_LIMIT, limit=slots))
            except Exception:  # a parallel flow created it first
                pass
            return
        if limit.active_slots and not get_current_settings().api.url:
            client.update_global_concurrency_limit(GPU_LIMIT, GlobalConcurrencyLimitUpdate(active_slots=0))


@contextmanager
def gpu_slot() -> Iterator[None]:
    """Hold the GPU slot for the duration (waits while another task holds it)."""
    from prefect.concurrency.sync import concurrency
    with concurrency(GPU_LIMIT, occupy=1, strict=False):
        yield


TRANSIENT = (CatalogLocked, TimeoutError, ConnectionError, BlockingIOError, InterruptedError)


def retry_transient(task, task_run, state) -> bool:
    """Retry what a second try can fix (a locked catalog, a network blip); not a bad configuration."""
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


def catalog_identity(db: str) -> str:
    """Differs between two catalogs at the same path: the id of the catalog's first run (a UUID)."""
    with Catalog(db).read() as con:
        return first_run_id(con) or "empty"


def chunk_key(*parts: str, ids: list[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() + b"\0")
    for i in sorted(ids):
        h.update(i.encode() + b"\n")
    return h.hexdigest()
