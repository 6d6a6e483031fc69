"""A read snapshot of the catalog for tools that cannot wait for a lock (the stock DuckDB CLI).

DuckDB lets one process write a file and, meanwhile, no other process open
it. nearmiss's own readers retry until a write transaction ends; the stock
CLI does not, so it opens a snapshot instead: a consistent copy taken in one
read transaction, written beside the catalog and swapped in with an atomic
rename. A CLI session holding the old snapshot keeps reading it; the next
session sees the new one. Flows publish a snapshot when they finish.

The per-frame feature tables are most of a catalog's bytes (a 10,000-clip
catalog is 4.6 GB) and copying them after every run would cost more than the
run, so by default the snapshot has them empty; `nearmiss snapshot --full`
copies them too (for embedding SQL in the CLI), and `nearmiss query` always
reads them live.
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


FRAME_TABLES = ("frame_features", "motion_features")


def _copy(con: duckdb.DuckDBPyConnection, live: str, full: bool) -> None:
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = ?"
                                        " ORDER BY 1", [live]).fetchall()]
    for t in tables:
        limit = "" if full or t not in FRAME_TABLES else " LIMIT 0"
        con.execute(f'CREATE TABLE snap.main."{t}" AS SELECT * FROM "{live}".main."{t}"{limit}')
    views = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal"
                        " ORDER BY 1", [live]).fetchall()
    con.execute("USE snap")
    pending = list(views)
    while pending:  # views may use each other: create what binds, then the rest
        left = []
        for name, sql in pending:
            try:
                con.execute(sql)
            except duckdb.CatalogException:
                left.append((name, sql))
        if len(left) == len(pending):
            raise RuntimeError(f"cannot recreate views {[n for n, _ in left]} in the snapshot")
        pending = left
    con.execute(f'USE "{live}"')


def publish_snapshot(catalog: Catalog, full: bool = False) -> Path:
    """Copy the catalog to <name>.snapshot.duckdb atomically; returns its path."""
    target = snapshot_path(catalog.path)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    leftovers = (tmp, tmp.with_name(tmp.name + ".wal"))   # DuckDB writes a WAL beside a file it is filling
    for f in leftovers:
        f.unlink(missing_ok=True)
    try:
        with catalog.read() as con:  # one read transaction (waits, with backoff, while a writer holds the file)
            live = con.execute("SELECT current_database()").fetchone()[0]
            con.execute(f"ATTACH {_quote(tmp)} AS snap (READ_WRITE, STORAGE_VERSION '{STORAGE_COMPATIBILITY}')")
            _copy(con, live, full)
            con.execute("DETACH snap")
    except BaseException:
        for f in leftovers:
            f.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target
