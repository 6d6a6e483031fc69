"""What the heads read: stored feature sequences, labels and the train/val/test split."""
from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.sequences import MOTION_GRIDS, MOTION_SCALARS, ClipLabel, Sequences

SPLIT_SCHEME = "sha256:60/20/20"


def _matrix(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if len(col) == 0:
        return np.zeros((0, 0), np.float32)
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(len(col), -1)


def load_sequences(con: duckdb.DuckDBPyConnection, fs_id: str, clip_ids: list[str],
                   with_flow: bool = False, with_embeddings: bool = True) -> Sequences:
    """Features of these clips, grouped by clip (any clip order; clips without features are left out)."""
    order = pa.table({"clip_id": pa.array(clip_ids, pa.string()), "ord": pa.array(np.arange(len(clip_ids)))})
    con.register("_wanted", order)
    try:
        emb = "f.clip_embedding, f.embclip," if with_embeddings else ""
        # No ORDER BY: sorting wide list rows in DuckDB costs more than the whole read; numpy sorts the keys.
        table = con.sql(
            f"SELECT w.ord, f.frame_idx, f.t_s, {emb} " + ", ".join(f"m.{c}" for c in MOTION_SCALARS + MOTION_GRIDS)
            + (", m.flow_stack" if with_flow else "")
            + " FROM _wanted w JOIN frame_features f ON f.clip_id = w.clip_id AND f.feature_set_id = ?"
            " JOIN motion_features m ON m.clip_id = f.clip_id AND m.feature_set_id = f.feature_set_id"
            " AND m.frame_idx = f.frame_idx",
            params=[fs_id],
        ).to_arrow_table()
    finally:
        con.unregister("_wanted")
    n = len(table)
    ords = table.column("ord").to_numpy()
    frame_idx = table.column("frame_idx").to_numpy()
    # Rows usually arrive grouped by clip with frames in order: then the clips are taken in the order
    # they came (no copy). Otherwise rows are sorted, which copies every matrix once.
    starts = np.flatnonzero(np.diff(ords, prepend=-1)) if n else np.zeros(0, int)
    grouped = len(starts) == len(np.unique(ords)) and bool(np.all(np.diff(frame_idx)[np.diff(ords) == 0] > 0))
    if grouped:
        perm, present = slice(None), ords[starts]
        counts = np.diff(np.append(starts, n))
    else:
        perm = np.lexsort((frame_idx, ords))
        present, counts = np.unique(ords, return_counts=True)
    col = lambda name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float32)[perm]  # noqa: E731
    mat = lambda name: _matrix(table, name)[perm] if n else np.zeros((0, 0), np.float32)  # noqa: E731
    scalars = np.stack([col(c) for c in MOTION_SCALARS], 1) if n else np.zeros((0, len(MOTION_SCALARS)), np.float32)
    motion = np.concatenate([scalars] + [mat(c) for c in MOTION_GRIDS], 1) if n else scalars
    embclip = None
    if with_embeddings and n and table.column("embclip").null_count == 0:
        embclip = mat("embclip")
    return Sequences(
        clip_ids=[clip_ids[i] for i in present],
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        times=col("t_s"),
        clip=mat("clip_embedding") if with_embeddings else np.zeros((n, 0), np.float32),
        embclip=embclip,
        motion=motion,
        flow=mat("flow_stack") if with_flow else None,
    )


def labelled_clips(con: duckdb.DuckDBPyConnection, fs_id: str) -> list[tuple[str, ClipLabel, str | None]]:
    """(clip_id, label, split) for every labelled clip with features in fs_id; the newest label per clip."""
    rows = con.execute(
        "SELECT l.clip_id, l.class, l.event_start_s, l.event_end_s, l.event_peak_s, s.split FROM labels l"
        " JOIN clip_features f ON f.clip_id = l.clip_id AND f.feature_set_id = ? AND f.status = 'ok'"
        " LEFT JOIN splits s ON s.clip_id = l.clip_id"
        " QUALIFY row_number() OVER (PARTITION BY l.clip_id ORDER BY l.created_at DESC) = 1"
        " ORDER BY l.clip_id",
        [fs_id],
    ).fetchall()
    return [(r[0], ClipLabel(r[1], r[2], r[3], r[4]), r[5]) for r in rows]


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


def scored_clip_ids(con: duckdb.DuckDBPyConnection, fs_id: str, model_name: str, model_version: int,
                    where: str | None = None, only_missing: bool = True, limit: int | None = None) -> list[str]:
    """Clips with features in fs_id (optionally filtered by a SQL predicate on `clips`), and,
    when only_missing, without a prediction from this head version."""
    missing = (" AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.clip_id = c.id"
               " AND p.model_name = ? AND p.model_version = ?)") if only_missing else ""
    params: list = [fs_id] + ([model_name, model_version] if only_missing else [])
    sql = ("SELECT c.id FROM clips c JOIN clip_features f ON f.clip_id = c.id AND f.feature_set_id = ?"
           " AND f.status = 'ok' WHERE c.status = 'ok'" + missing
           + (f" AND ({where})" if where else "") + " ORDER BY c.id" + (" LIMIT ?" if limit else ""))
    return [r[0] for r in con.execute(sql, params + ([limit] if limit else [])).fetchall()]
