"""A read snapshot of the catalog for tools that cannot wait for a lock (the stock DuckDB CLI).

DuckDB lets one process write a file and, meanwhile, no other process open
it. nearmiss's own readers retry until a write transaction ends; the stock
CLI does not, so it opens a snapshot instead: a consistent copy taken in one
read transaction, written beside the catalog and swapped in with an atomic
rename. A CLI session holding the old snapshot keeps reading it; the next
session sees the new one. Flows publish a snapshot when they finish.
"""
from __future__ import annotations

import os
from pathlib import Path

import duckdb

from catalog.connection import STORAGE_COMPATIBILITY, Catalog


def snapshot_path(db: str) -> Path:
    p = Path(db)
    return p.with_name(p.stem + ".snapshot" + (p.suffix or ".duckdb"))


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def publish_snapshot(catalog: Catalog) -> Path:
    """Copy the catalog to <name>.snapshot.duckdb atomically; returns its path."""
    target = snapshot_path(catalog.path)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    with catalog.read():  # waits (with backoff) until no writer holds the file
        pass
    deadline_tries = 50
    for attempt in range(deadline_tries):
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH {_quote(Path(catalog.path))} AS live (READ_ONLY)")
            con.execute(f"ATTACH {_quote(tmp)} AS snap (STORAGE_VERSION '{STORAGE_COMPATIBILITY}')")
            con.execute("COPY FROM DATABASE live TO snap")
            con.execute("DETACH snap")
            con.execute("DETACH live")
            break
        except duckdb.IOException as exc:  # a writer got in first: wait for it like any reader
            tmp.unlink(missing_ok=True)
            if "lock" not in str(exc).lower() or attempt == deadline_tries - 1:
                raise
            with catalog.read():
                pass
        finally:
            con.close()
    os.replace(tmp, target)
    return target
