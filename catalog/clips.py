"""Clip and clip-path rows."""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from contracts.clips import ClipRow


@dataclass(frozen=True)
class SeenPath:
    clip_id: str
    size_bytes: int | None
    mtime_ns: int | None
    status: str


def seen_paths(con: duckdb.DuckDBPyConnection) -> dict[str, SeenPath]:
    """Every path already in the catalog, so a re-run skips unchanged files without hashing them."""
    rows = con.execute(
        "SELECT p.path, p.clip_id, p.size_bytes, p.mtime_ns, c.status"
        " FROM clip_paths p JOIN clips c ON c.id = p.clip_id"
    ).fetchall()
    return {r[0]: SeenPath(r[1], r[2], r[3], r[4]) for r in rows}


def clip_statuses(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str | None]]:
    """clip id -> (status, error)."""
    return {r[0]: (r[1], r[2]) for r in con.execute("SELECT id, status, error FROM clips").fetchall()}


def record_clip(con: duckdb.DuckDBPyConnection, row: ClipRow, mtime_ns: int | None,
                replace_failed: bool = False) -> bool:
    """Insert the clip once and remember this path. Returns True if the clip row is new.

    The same bytes under another name add a clip_paths row, never a second clip.
    """
    existing = con.execute("SELECT status FROM clips WHERE id = ?", [row.id]).fetchone()
    inserted = False
    if existing is None or (replace_failed and existing[0] == "failed"):
        con.execute("DELETE FROM clips WHERE id = ?", [row.id])
        con.execute(
            "INSERT INTO clips (id, path, size_bytes, duration_s, fps, n_frames, width, height,"
            " codec, status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row.id, row.path, row.size_bytes, row.duration_s, row.fps, row.n_frames,
             row.width, row.height, row.codec, row.status, row.error],
        )
        inserted = True
    # A path now holds these bytes: forget whatever else it held before.
    con.execute("DELETE FROM clip_paths WHERE path = ? AND clip_id <> ?", [row.path, row.id])
    con.execute(
        "INSERT INTO clip_paths (clip_id, path, size_bytes, mtime_ns) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (path, clip_id) DO UPDATE SET size_bytes = excluded.size_bytes,"
        " mtime_ns = excluded.mtime_ns, last_seen_at = now()",
        [row.id, row.path, row.size_bytes, mtime_ns],
    )
    # An unreadable-path failure row is obsolete once the path yields bytes.
    con.execute(
        "DELETE FROM clips WHERE id LIKE 'unreadable:%' AND path = ? AND id <> ?", [row.path, row.id]
    )
    return inserted


def clip_durations(con: duckdb.DuckDBPyConnection, clip_ids: list[str]) -> dict[str, float | None]:
    if not clip_ids:
        return {}
    rows = con.execute(
        "SELECT id, duration_s FROM clips WHERE id IN (SELECT unnest(?))", [clip_ids]
    ).fetchall()
    return dict(rows)


def path_index(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    """(path, clip_id, status) for every known path."""
    return con.execute(
        "SELECT p.path, p.clip_id, c.status FROM clip_paths p JOIN clips c ON c.id = p.clip_id"
    ).fetchall()
