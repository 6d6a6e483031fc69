"""Lineage: one row per flow run, open while it runs, closed with its counts."""
from __future__ import annotations

import json
import os
import socket
import uuid

import duckdb


def start_run(con: duckdb.DuckDBPyConnection, flow: str, parameters: dict,
              prefect_flow_run_id: str | None = None) -> str:
    _mark_crashed(con)
    run_id = str(uuid.uuid4())
    con.execute(
        "INSERT INTO runs (id, flow, parameters, status, pid, host, prefect_flow_run_id)"
        " VALUES (?, ?, ?, 'running', ?, ?, ?)",
        [run_id, flow, json.dumps(parameters, default=str), os.getpid(), socket.gethostname(),
         prefect_flow_run_id],
    )
    return run_id


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, status: str, counts: dict,
               error: str | None = None) -> None:
    con.execute(
        "UPDATE runs SET status = ?, counts = ?, error = ?, finished_at = now() WHERE id = ?",
        [status, json.dumps(counts, default=str), error, run_id],
    )


def _mark_crashed(con: duckdb.DuckDBPyConnection) -> None:
    """Runs left 'running' by a process on this host that no longer exists were killed."""
    host = socket.gethostname()
    for run_id, pid in con.execute(
        "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", [host]
    ).fetchall():
        if pid is not None and not pid_alive(pid):
            con.execute(
                "UPDATE runs SET status = 'crashed', error = 'process ended before the run finished'"
                " WHERE id = ?", [run_id],
            )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def first_run_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id (a UUID) of the catalog's first run: tells two catalogs at the same path apart."""
    row = con.execute("SELECT id FROM runs ORDER BY started_at, id LIMIT 1").fetchone()
    return row[0] if row else None
