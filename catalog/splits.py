"""The fixed train/val/test split: assigned once per labelled clip from its content hash, never moved."""
from __future__ import annotations

import hashlib

import duckdb

SPLIT_SCHEME = "sha256:60/20/20"


def split_of(clip_id: str, fractions: tuple[float, float] = (0.6, 0.8)) -> str:
    """Deterministic: the clip's content hash decides, so the same clip lands in the same split anywhere."""
    u = int(hashlib.sha256(f"split:{clip_id}".encode()).hexdigest()[:12], 16) / float(1 << 48)
    return "train" if u < fractions[0] else "val" if u < fractions[1] else "test"


def assign_splits(con: duckdb.DuckDBPyConnection) -> int:
    """Give every labelled clip without a split its split; existing assignments never move. Returns new count."""
    todo = [r[0] for r in con.execute(
        "SELECT DISTINCT l.clip_id FROM labels l ANTI JOIN splits s ON s.clip_id = l.clip_id ORDER BY 1").fetchall()]
    for cid in todo:
        con.execute("INSERT INTO splits (clip_id, split, scheme) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    [cid, split_of(cid), SPLIT_SCHEME])
    return len(todo)
