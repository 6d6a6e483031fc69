"""Claims: which process is featurizing which clip, so that two runs on one catalog share the work.

A run claims a few pending clips at a time in one short write transaction (a `clip_claims` row each,
with its owner and a lease), featurizes them, and claims more. Another run skips clips held by a live
owner. A claim lapses when its lease runs out (the owner renews it while it works: `ClaimHeartbeat`), or
at once when its owner was a process on this host that no longer exists (a killed run's clips are not
held back from the run that follows it).
"""
from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from catalog.connection import Catalog
from catalog.features import finished_condition
from catalog.runs import pid_alive


@dataclass(frozen=True)
class ClaimOwner:
    """One featurize run: its host and process, and a token that tells two runs of one process apart."""
    host: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> "ClaimOwner":
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


def _drop_lapsed(con: duckdb.DuckDBPyConnection, fs_id: str) -> None:
    con.execute("DELETE FROM clip_claims WHERE feature_set_id = ? AND expires_at < now()", [fs_id])
    host = socket.gethostname()
    dead = [pid for (pid,) in con.execute(
        "SELECT DISTINCT pid FROM clip_claims WHERE feature_set_id = ? AND host = ?", [fs_id, host]).fetchall()
        if not pid_alive(pid)]
    if dead:
        con.execute("DELETE FROM clip_claims WHERE feature_set_id = ? AND host = ? AND list_contains(?, pid)",
                    [fs_id, host, dead])


def claim_clips(con: duckdb.DuckDBPyConnection, fs_id: str, owner: ClaimOwner, candidates: list[str],
                n: int, lease_s: float, retry_failed: bool = False) -> list[str]:
    """Claim, in order, up to n of `candidates` that no live owner holds and that are not finished in the
    feature set (meanwhile, by another run). Returns the clip ids claimed. Call inside one write
    transaction, so that two runs cannot claim the same clip."""
    _drop_lapsed(con, fs_id)
    done = finished_condition(retry_failed)
    con.register("_claim_candidates", pa.table({"clip_id": pa.array(candidates, pa.string()),
                                                "k": pa.array(range(len(candidates)), pa.int64())}))
    try:
        free = [r[0] for r in con.execute(
            "SELECT k.clip_id FROM _claim_candidates k"
            " LEFT JOIN clip_features f ON f.clip_id = k.clip_id AND f.feature_set_id = ?"
            " WHERE NOT coalesce(" + done + ", false)"
            "   AND k.clip_id NOT IN (SELECT clip_id FROM clip_claims WHERE feature_set_id = ? AND owner <> ?)"
            " ORDER BY k.k LIMIT ?", [fs_id, fs_id, owner.id, n]).fetchall()]
    finally:
        con.unregister("_claim_candidates")
    if free:
        con.executemany(
            "INSERT OR REPLACE INTO clip_claims (clip_id, feature_set_id, owner, host, pid, expires_at)"
            " VALUES (?, ?, ?, ?, ?, now() + to_microseconds(?::BIGINT))",
            [[c, fs_id, owner.id, owner.host, owner.pid, int(lease_s * 1e6)] for c in free])
    return free


def renew_claims(con: duckdb.DuckDBPyConnection, owner: ClaimOwner, lease_s: float) -> None:
    con.execute("UPDATE clip_claims SET expires_at = now() + to_microseconds(?::BIGINT) WHERE owner = ?",
                [int(lease_s * 1e6), owner.id])


def release_claims(con: duckdb.DuckDBPyConnection, owner: ClaimOwner) -> None:
    con.execute("DELETE FROM clip_claims WHERE owner = ?", [owner.id])


@dataclass
class ClaimHeartbeat:
    """Renews an owner's claims every third of the lease while a run works; releases them on exit."""
    catalog: Catalog
    owner: ClaimOwner
    lease_s: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "ClaimHeartbeat":
        self._thread = threading.Thread(target=self._beat, name="nearmiss-claims", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self.catalog.write() as con:
                    renew_claims(con, self.owner, self.lease_s)
            except Exception:
                pass  # a busy or failing catalog: the next beat tries again; at worst the lease runs out

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        try:
            with self.catalog.write() as con:
                release_claims(con, self.owner)
        except Exception:
            pass  # left to lapse: the lease ends, or the pid is seen gone on this host
