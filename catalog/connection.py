"""Opening the catalog.

DuckDB lets one process hold a database file open for writing, and while it
does no other process can open it at all. So nearmiss never keeps a
connection open across work: every read or write opens the file, does one
short transaction and closes it. A second process (a user's `nearmiss query`,
the stock DuckDB client, another flow) that hits the lock retries with
backoff until `lock_timeout_s`.
"""
from __future__ import annotations

import os
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa

from catalog.schema import migrate

DEFAULT_DB = "nearmiss.duckdb"
# New catalogs are written in a storage format the stock DuckDB CLI (1.5.x, `pip install duckdb-cli`)
# can open; the Python package (2.0) reads and writes it unchanged.
STORAGE_COMPATIBILITY = "v1.5.0"


@contextmanager
def clip_id_table(con: duckdb.DuckDBPyConnection, ids: list[str], name: str = "_ids") -> Iterator[str]:
    """Register `ids` as a one-column table (clip_id) for a semi-join; unregistered on exit."""
    con.register(name, pa.table({"clip_id": pa.array(ids, pa.string())}))
    try:
        yield name
    finally:
        con.unregister(name)


def default_db_path() -> str:
    return os.environ.get("NEARMISS_DB") or DEFAULT_DB


# User-supplied SQL (`nearmiss query`, `--where`, a deployment's `where`) runs with no file system
# access beyond the catalog itself and with its configuration frozen: no SET log_query_path, no
# COPY/ATTACH/IMPORT, no read_text('/etc/shadow'). The read-only handle stops table writes.
SANDBOX_CONFIG = {"enable_external_access": False, "lock_configuration": True}


class CatalogLocked(RuntimeError):
    pass


class CatalogMissing(FileNotFoundError):
    pass


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


@dataclass
class Catalog:
    path: str
    lock_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        self.path = str(Path(self.path).expanduser())
        self._migrated = False
        # One writer at a time inside this process too: DuckDB shares one
        # instance per process, and closing it is what frees the file lock.
        self._write_lock = threading.RLock()

    def _open(self, read_only: bool, sandboxed: bool = False) -> duckdb.DuckDBPyConnection:
        if read_only and not Path(self.path).exists():
            raise CatalogMissing(f"no catalog at {self.path}: run `nearmiss ingest` first, or pass --db")
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.01
        while True:
            try:
                config = {} if read_only or Path(self.path).exists() else \
                    {"storage_compatibility_version": STORAGE_COMPATIBILITY}
                if sandboxed:
                    config = dict(SANDBOX_CONFIG)
                return duckdb.connect(self.path, read_only=read_only, config=config)
            except duckdb.IOException as exc:  # another process holds the file
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    if _is_lock_error(exc):
                        raise CatalogLocked(
                            f"{self.path} stayed locked by another process for {self.lock_timeout_s:.0f}s: {exc}"
                        ) from exc
                    raise
            except duckdb.ConnectionException as exc:
                # Same process already holds it with a different mode; treat as busy.
                if time.monotonic() > deadline:
                    raise CatalogLocked(str(exc)) from exc
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)

    @contextmanager
    def read(self, sandboxed: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection, closed on exit; sandboxed for SQL text a user or a flow parameter supplied."""
        con = self._open(read_only=True, sandboxed=sandboxed)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One short write transaction: committed on success, rolled back on error, file closed after."""
        with self._write_lock:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            con = self._open(read_only=False)
            try:
                if not self._migrated:
                    migrate(con, self.path)
                    self._migrated = True
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                con.close()

    def ensure(self) -> None:
        """Create or upgrade the file now (raises SchemaTooNew for a file from a newer nearmiss)."""
        with self.write():
            pass
