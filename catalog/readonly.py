"""SQL text from a user or a flow parameter: `nearmiss query` and `--where` predicates.

Two locks, either of which alone would stop the writes seen so far:
1. statement types are allow-listed before anything runs (SELECT, SHOW, DESCRIBE,
   SUMMARIZE, EXPLAIN, PIVOT): no SET, PRAGMA, CALL, IMPORT, COPY or ATTACH;
2. the connection is read-only, cannot touch any file but the catalog, and its
   configuration is locked (`Catalog.read(sandboxed=True)`).
"""
from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from catalog.connection import Catalog

_READ_TYPES = {
    duckdb.StatementType.SELECT,   # also SHOW, DESCRIBE, SUMMARIZE, VALUES, FROM-first queries
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.MULTI,    # PIVOT (a table write inside one fails on the read-only handle)
}


class WriteRefused(ValueError):
    pass


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]


def _statements(sql: str) -> list:
    try:
        return duckdb.connect().extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"SQL does not parse: {str(exc).splitlines()[0]}") from None


def check_read_only(sql: str) -> None:
    for st in _statements(sql):
        if st.type not in _READ_TYPES:
            raise WriteRefused(
                f"read-only: {_statement_name(st)} statements are refused "
                "(use SHOW TABLES, DESCRIBE t or SELECT). The catalog is written only by nearmiss "
                "commands and flows (ingest, featurize, score, rescore, train).")


def _statement_name(st) -> str:
    """What the user wrote (IMPORT DATABASE, INSTALL), not DuckDB's internal type (PRAGMA, LOAD) for it."""
    words = st.query.split()
    if st.type.name in ("PRAGMA", "LOAD") and words and words[0].upper() != st.type.name:
        return " ".join(w.upper() for w in words[:2 if words[0].upper() in ("IMPORT", "EXPORT") else 1])
    return st.type.name


def check_predicate(where: str) -> str:
    """A `--where` filter must be one boolean expression, not a way to append statements."""
    probe = f"SELECT 1 FROM clips c WHERE ({where})"
    statements = _statements(probe)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise WriteRefused(f"--where must be one SQL condition on the clips, got {where!r}")
    return where


class QueryStopped(ValueError):
    """A query interrupted: past its time budget, or by Ctrl-C."""


def validate_predicate(catalog: Catalog, where: str) -> str:
    """A --where filter checked before any work or run record: one condition, and bound on the sandboxed
    connection (LIMIT 0: nothing is computed), so a reference to a file or a missing column is refused here."""
    check_predicate(where)
    with catalog.read(sandboxed=True) as con:
        try:
            con.execute(f"SELECT 1 FROM clips c WHERE ({where}) LIMIT 0")
        except duckdb.PermissionException as exc:
            raise WriteRefused(f"SQL may read the catalog only: {str(exc).splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise ValueError(f"--where {where!r}: {str(exc).splitlines()[0]}") from None
    return where


def run_query(catalog: Catalog, sql: str, timeout_s: float | None = None) -> QueryResult:
    """Stopped at `timeout_s` (default: the NEARMISS_QUERY_TIMEOUT_S setting) or on Ctrl-C, at once: a
    watcher thread calls DuckDB's interrupt(), and the connection (with the file lock a writer may be
    waiting for) is released. The query itself runs on this thread: DuckDB's client does not survive a
    signal arriving while it executes on another one (measured: the thread dies mid-call)."""
    from contracts.settings import settings

    check_read_only(sql)
    budget = settings().query_timeout_s if timeout_s is None else timeout_s
    with catalog.read(sandboxed=True) as con:
        with _interruptible(con, budget) as why:
            try:
                try:
                    cur = con.execute(sql)
                    return QueryResult([d[0] for d in cur.description], cur.fetchall()) \
                        if cur.description is not None else QueryResult([], [])
                except (duckdb.InterruptException, KeyboardInterrupt):
                    raise QueryStopped(_stopped(why.get("why", "ctrl-c"), budget)) from None
                except duckdb.PermissionException as exc:
                    raise WriteRefused(f"read-only, the catalog alone: {str(exc).splitlines()[0]}") from None
                except (duckdb.CatalogException, duckdb.BinderException, duckdb.ParserException,
                        duckdb.ConversionException, duckdb.InvalidInputException) as exc:
                    raise ValueError(str(exc).splitlines()[0]) from None
            except KeyboardInterrupt:   # the signal's own exception, raised once DuckDB returned
                raise QueryStopped(_stopped("ctrl-c", budget)) from None


def _stopped(why: str, budget: float) -> str:
    if why == "timeout":
        return (f"query stopped after {budget:g}s (its time budget: --timeout-s, or NEARMISS_QUERY_TIMEOUT_S): a "
                "reader holds the catalog a writer may be waiting for. Narrow it, or run it on the read snapshot "
                "with the duckdb CLI")
    return "query stopped (Ctrl-C); nothing was changed"


@contextmanager
def _interruptible(con: duckdb.DuckDBPyConnection, budget: float) -> Iterator[dict]:
    """While the block runs, a watcher thread interrupts the connection's query at the time budget, or as soon
    as a signal (Ctrl-C) arrives: Python's own signal handler writes to a wakeup pipe the watcher reads,
    whichever thread DuckDB keeps busy. Yields a dict that says why it stopped the query."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False) if main else None
    done, why = threading.Event(), {}

    def watch() -> None:
        woke = select.select([r], [], [], budget)[0]
        if done.is_set():
            return
        why["why"] = "ctrl-c" if woke else "timeout"
        con.interrupt()
    watcher = threading.Thread(target=watch, name="nearmiss-query-budget", daemon=True)
    watcher.start()
    try:
        yield why
    finally:
        done.set()
        os.write(w, b"x")            # wake the watcher, which then sees it is done
        watcher.join(5)
        if main:
            signal.set_wakeup_fd(previous)
        os.close(r)
        os.close(w)
