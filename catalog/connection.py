"""Opening the catalog.

DuckDB lets one process hold a database file open for writing, and while it
does no other process can open it at all. So nearmiss never keeps a
connection open across work: every read or write opens the file, does one
short transaction and closes it. A second process (a user's `nearmiss query`,
the stock DuckDB client, another flow) that hits the lock retries with
backoff until `lock_timeout_s`.
"""
from __future__ import annotations

import random
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import duckdb

from catalog.schema import migrate
from contracts.settings import settings

DEFAULT_DB = "nearmiss.duckdb"
# New catalogs are written in a storage format the stock DuckDB CLI (1.5.x, `pip install duckdb-cli`)
# can open; the Python package (2.0) reads and writes it unchanged.
STORAGE_COMPATIBILITY = "v1.5.0"


@contextmanager
def clip_id_table(con: duckdb.DuckDBPyConnection, ids: list[str], name: str = "_ids") -> Iterator[str]:
    """Register `ids` as a one-column table (clip_id) for a semi-join; unregistered on exit."""
    import pyarrow as pa   # here, not at the top: `query` and `check` never need it (bench/cli_latency.py)
    con.register(name, pa.table({"clip_id": pa.array(ids, pa.string())}))
    try:
        yield name
    finally:
        con.unregister(name)


def default_db_path() -> str:
    return settings().db or DEFAULT_DB


# User-supplied SQL (`nearmiss query`, `--where`, a deployment's `where`) runs with no file system
# access beyond the catalog itself and with its configuration frozen: no SET log_query_path, no
# COPY/ATTACH/IMPORT, no read_text('/etc/shadow'). The read-only handle stops table writes.
SANDBOX_CONFIG = {"enable_external_access": False, "lock_configuration": True}


# One connection to a catalog file at a time in this process, whichever Catalog object or thread opens it.
# DuckDB shares one database instance per file among a process's connections, and a connection opened or
# closed on one thread while another thread's transaction runs broke it (a featurize run's clip store
# failed with "Table Function with name python_arrow_scan does not exist" while the claims heartbeat,
# another Catalog object on another thread, renewed its lease; or "Unique file handle conflict").
_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def file_lock(path: str) -> threading.RLock:
    key = str(Path(path).resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


class CatalogLocked(RuntimeError):
    pass


class CatalogMissing(FileNotFoundError):
    pass


class CatalogDamaged(RuntimeError):
    """The file is not a readable DuckDB database, or a block failed its checksum."""


def damaged(path: str, exc: Exception) -> CatalogDamaged:
    return CatalogDamaged(f"{path} is damaged ({str(exc).splitlines()[0][:160]}); nothing was written to it. "
                          "Restore it from a backup, or start from its read snapshot "
                          f"({Path(path).with_suffix('.snapshot.duckdb').name}); `nearmiss check` tests a catalog")


_HEADER_BYTES = 3 * 4096  # DuckDB's file header and its two database headers, before the first block


def _check_length(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """A truncated file opens, and answers queries about the blocks it still has: it must be as long as the
    blocks its header counts, or nothing read from it can be trusted."""
    # used, not total: free blocks at the end are cut off the file, so only the used ones must all fit in it
    (block_size, blocks), = con.execute("SELECT block_size, used_blocks FROM pragma_database_size()").fetchall()
    size = Path(path).stat().st_size
    if size < _HEADER_BYTES + blocks * block_size:
        raise damaged(path, RuntimeError(f"the file is truncated: {size} bytes, its header counts {blocks} blocks "
                                         f"in use of {block_size} ({_HEADER_BYTES + blocks * block_size} bytes)"))


def is_damage(exc: Exception) -> bool:
    text = str(exc)
    return ("not a valid DuckDB database file" in text or "Corrupt database file" in text or "checksum" in text
            or "Could not read enough bytes" in text)   # a truncated file


def _lock_holder(exc: Exception) -> str:
    """DuckDB names the process that holds the lock: 'Conflicting lock is held in /usr/bin/python (PID 123)'."""
    m = re.search(r"held in (.+?)\s*\(PID (\d+)\)", str(exc))
    return f"PID {m.group(2)} ({Path(m.group(1)).name})" if m else "another process"


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


@dataclass
class Catalog:
    path: str
    lock_timeout_s: float | None = None   # default: NEARMISS_LOCK_TIMEOUT_S (600 s)

    def __post_init__(self) -> None:
        self.path = str(Path(self.path).expanduser())
        if self.lock_timeout_s is None:
            self.lock_timeout_s = settings().lock_timeout_s
        self._migrated = False
        # One connection at a time inside this process too (see file_lock): DuckDB shares one instance per
        # process, and closing it is what frees the file lock for other processes.
        self._lock = file_lock(self.path)

    def _open(self, read_only: bool, sandboxed: bool = False) -> duckdb.DuckDBPyConnection:
        where = Path(self.path)
        if where.is_dir():
            raise CatalogMissing(f"{self.path} is a folder, not a catalog file: pass --db FOLDER/name.duckdb")
        if not where.parent.is_dir():   # a typo must not become a new catalog in new folders
            raise CatalogMissing(f"the folder {where.parent} does not exist: create it first, or check --db "
                                 f"({self.path})")
        if read_only and not Path(self.path).exists():
            raise CatalogMissing(f"no catalog at {self.path}: run `nearmiss ingest` first, or pass --db")
        started = time.monotonic()
        deadline = started + self.lock_timeout_s
        delay, told = 0.01, False
        while True:
            try:
                config = {} if read_only or Path(self.path).exists() else \
                    {"storage_compatibility_version": STORAGE_COMPATIBILITY}
                if sandboxed:
                    config = dict(SANDBOX_CONFIG)
                con = duckdb.connect(self.path, read_only=read_only, config=config)
                try:
                    _check_length(con, self.path)
                except BaseException:
                    con.close()
                    raise
                return con
            except duckdb.IOException as exc:  # another process holds the file, or it is not a database
                if is_damage(exc):
                    raise damaged(self.path, exc) from None
                if not _is_lock_error(exc):
                    raise
                # Told before the deadline check: a slow retry can land past both at once.
                if not told and time.monotonic() - started > 0.5:
                    print(f"nearmiss: waiting for {_lock_holder(exc)}, which holds {self.path} "
                          f"(up to {self.lock_timeout_s:.0f}s)", file=sys.stderr)
                    told = True
                if time.monotonic() > deadline:
                    raise CatalogLocked(
                        f"{self.path} stayed locked by {_lock_holder(exc)} for {self.lock_timeout_s:.0f}s; "
                        "close that session (or raise NEARMISS_LOCK_TIMEOUT_S) and re-run: finished work is kept"
                    ) from None
            except duckdb.ConnectionException as exc:
                # Same process already holds it with a different mode; treat as busy.
                if time.monotonic() > deadline:
                    raise CatalogLocked(str(exc)) from exc
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)

    @contextmanager
    def read(self, sandboxed: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection, closed on exit; sandboxed for SQL text a user or a flow parameter supplied."""
        with self._lock:
            con = self._open(read_only=True, sandboxed=sandboxed)
            try:
                yield con
            finally:
                con.close()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One short write transaction: committed on success, rolled back on error, file closed after."""
        with self._lock:
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
                    try:
                        con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass  # an I/O error (a full disk) already aborted it: keep the error that did
                    raise
            finally:
                con.close()

    def ensure(self) -> None:
        """Create or upgrade the file now (raises SchemaTooNew for a file from a newer nearmiss)."""
        with self.write():
            pass
