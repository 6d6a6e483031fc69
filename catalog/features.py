"""Feature sets and per-frame features. A clip's features land in one transaction."""
from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from catalog.connection import clip_id_table
from contracts.columns import MOTION_GRIDS, MOTION_SCALARS
from contracts.feature_set import FeatureSetInfo
from contracts.flow_stacks import PackedStacks


@dataclass(frozen=True)
class PendingClip:
    clip_id: str
    paths: list[str]
    duration_s: float | None


def register_feature_set(con: duckdb.DuckDBPyConnection, fs_id: str, name: str, config: dict,
                         embed_dim: int, embclip_dim: int | None, untrained: bool) -> None:
    con.execute(
        "INSERT INTO feature_sets (id, name, config, embed_dim, embclip_dim, untrained) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        [fs_id, name, json.dumps(config, sort_keys=True), embed_dim, embclip_dim, untrained],
    )


def feature_set(con: duckdb.DuckDBPyConnection, fs_id: str | None) -> FeatureSetInfo | None:
    """The feature set fs_id, or the newest one when fs_id is None."""
    sql = "SELECT id, config FROM feature_sets " + ("WHERE id = ?" if fs_id else "ORDER BY created_at DESC LIMIT 1")
    row = con.execute(sql, [fs_id] if fs_id else []).fetchone()
    return FeatureSetInfo(row[0], json.loads(row[1])) if row else None


def feature_sets(con: duckdb.DuckDBPyConnection) -> list[FeatureSetInfo]:
    """Every feature set, newest first."""
    return [FeatureSetInfo(r[0], json.loads(r[1])) for r in con.execute("SELECT id, config FROM feature_sets"
                                                                         " ORDER BY created_at DESC").fetchall()]


def load_projection(con: duckdb.DuckDBPyConnection, fs_id: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    row = con.execute("SELECT n_in, n_out, mean, matrix, fitted_on_frames FROM feature_projections"
                      " WHERE feature_set_id = ?", [fs_id]).fetchone()
    if row is None:
        return None
    n_in, n_out, mean, matrix, n = row
    return np.asarray(mean, np.float32), np.asarray(matrix, np.float32).reshape(n_in, n_out), n


def save_projection(con: duckdb.DuckDBPyConnection, fs_id: str, mean: np.ndarray, matrix: np.ndarray,
                    fitted_on_frames: int) -> None:
    con.execute(
        "INSERT INTO feature_projections (feature_set_id, n_in, n_out, mean, matrix, fitted_on_frames)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (feature_set_id) DO NOTHING",
        [fs_id, matrix.shape[0], matrix.shape[1], mean.tolist(), matrix.reshape(-1).tolist(), fitted_on_frames],
    )


def finished_condition(retry_failed: bool) -> str:
    """SQL over clip_features `f`: the clip needs no more work in its feature set (failed ones too, unless
    they are to be retried)."""
    return "f.status = 'ok'" if retry_failed else "(f.status = 'ok' OR f.status = 'failed')"


def clips_needing_features(con: duckdb.DuckDBPyConnection, fs_id: str, limit: int | None = None,
                           retry_failed: bool = False) -> list[PendingClip]:
    rows = con.execute(
        "SELECT c.id, list(p.path ORDER BY p.last_seen_at DESC), c.duration_s FROM clips c"
        " JOIN clip_paths p ON p.clip_id = c.id"
        " LEFT JOIN clip_features f ON f.clip_id = c.id AND f.feature_set_id = ?"
        f" WHERE c.status = 'ok' AND NOT coalesce({finished_condition(retry_failed)}, false)"
        " AND c.id IN (SELECT clip_id FROM current_clip_paths)"  # a superseded copy is not worth features
        " GROUP BY c.id, c.duration_s, c.ingested_at ORDER BY c.ingested_at, c.id"
        + (" LIMIT ?" if limit else ""),
        [fs_id, limit] if limit else [fs_id],
    ).fetchall()
    return [PendingClip(r[0], r[1], r[2]) for r in rows]


def features_stored(con: duckdb.DuckDBPyConnection, fs_id: str, clip_ids: list[str]) -> int:
    """How many of these clips have a clip_features row (done or failed) in the feature set."""
    with clip_id_table(con, clip_ids):
        return con.execute("SELECT count(*) FROM clip_features WHERE feature_set_id = ?"
                           " AND clip_id IN (SELECT clip_id FROM _ids)", [fs_id]).fetchall()[0][0]


def float_lists(x: np.ndarray) -> pa.Array:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[1] == 0:  # a feature set without CLIP: an empty embedding per frame
        return pa.array([[]] * len(x), pa.list_(pa.float32()))
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]).cast(pa.list_(pa.float32()))


def _int8_lists(parts: list[np.ndarray]) -> pa.Array:
    """Lists of differing lengths (dense or coarse flow stacks), without a Python list per value."""
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int32)
    values = np.concatenate(parts).astype(np.int8) if parts else np.zeros(0, np.int8)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


_PER_FRAME_TABLES = ("frame_features", "motion_features", "objects")
_STATUS_COLUMNS = {"clip_id": pa.string(), "feature_set_id": pa.string(), "status": pa.string(),
                   "error": pa.string(), "n_frames": pa.int32(), "decoder": pa.string(), "device": pa.string(),
                   "seconds": pa.float64(), "object_frames": pa.int32()}


def _objects_table(clip_id: str, fs_id: str, obj) -> pa.Table:
    k = len(obj)
    return pa.table({
        "clip_id": pa.array([clip_id] * k, pa.string()), "feature_set_id": pa.array([fs_id] * k, pa.string()),
        "track_id": pa.array(obj.track_id, pa.int32()), "frame_idx": pa.array(obj.frame_idx, pa.int32()),
        "t_s": pa.array(obj.t_s, pa.float64()),
        **{c: pa.array(obj.boxes[:, i], pa.float32()) for i, c in enumerate(("x1", "y1", "x2", "y2"))},
        "score": pa.array(obj.score, pa.float32()), "coco_class": pa.array(obj.coco, pa.string()),
        "class": pa.array(obj.cls, pa.string()), "scale_rate": pa.array(obj.scale_rate, pa.float32()),
        "ttc_s": pa.array(obj.ttc_s, pa.float64()), "path_gap": pa.array(obj.path_gap, pa.float32()),
        "in_path": pa.array(obj.in_path, pa.bool_()), "entering": pa.array(obj.entering, pa.bool_()),
    })


def _status_row(clip_id, fs_id, status, error, n_frames, meta) -> pa.Table:
    values = {"clip_id": clip_id, "feature_set_id": fs_id, "status": status, "error": error, "n_frames": n_frames,
              **{k: meta.get(k) for k in ("decoder", "device", "seconds", "object_frames")}}
    return pa.table({k: pa.array([values[k]], t) for k, t in _STATUS_COLUMNS.items()})


def frame_rows(clip_id: str, fs_id: str, frame_idx: np.ndarray, times_s: np.ndarray, embeddings: np.ndarray,
               embclip: np.ndarray | None) -> pa.Table:
    """`frame_features` rows of these sampled frames (with the triage cascade, CLIP embeds only some of them:
    their times say at which rate)."""
    n = len(times_s)
    return pa.table({**_frame_keys(clip_id, fs_id, frame_idx, times_s), "clip_embedding": float_lists(embeddings),
                     "embclip": float_lists(embclip) if embclip is not None
                     else pa.nulls(n, pa.list_(pa.float32()))})


def motion_rows(clip_id: str, fs_id: str, start: int, times_s: np.ndarray, motion,
                flow: PackedStacks | None = None) -> pa.Table:
    """`motion_features` rows of consecutive sampled frames, without `object_summary` (known only once
    the whole clip's road users are tracked). flow: the stacks packed as the cascade keeps them
    (contracts/flow_stacks.py); None: at full precision in `flow_stack`."""
    n, scalars = len(times_s), motion.scalars()
    stacks = {"flow_stack": float_lists(motion.flow_stack.reshape(n, -1)),
              "flow_q": pa.nulls(n, pa.list_(pa.int8())), "flow_scale": pa.nulls(n, pa.list_(pa.float32()))}
    if flow is not None:
        stacks = {"flow_stack": pa.nulls(n, pa.list_(pa.float32())),
                  "flow_q": _int8_lists(flow.q),
                  "flow_scale": float_lists(flow.scale)}
    return pa.table({**_frame_keys(clip_id, fs_id, np.arange(start, start + n), times_s),
                     **{name: pa.array(scalars[name]) for name in MOTION_SCALARS},
                     **{name: float_lists(getattr(motion, name)) for name in MOTION_GRIDS}, **stacks})


def _frame_keys(clip_id: str, fs_id: str, frame_idx: np.ndarray, times_s: np.ndarray) -> dict[str, pa.Array]:
    n = len(times_s)
    return {"clip_id": pa.array([clip_id] * n, pa.string()), "feature_set_id": pa.array([fs_id] * n, pa.string()),
            "frame_idx": pa.array(np.asarray(frame_idx, dtype=np.int32)),
            "t_s": pa.array(np.asarray(times_s, float))}


def clip_rows(clip_id: str, fs_id: str, n_frames: int, meta: dict, objects=None) -> dict[str, pa.Table]:
    """A featurized clip's rows other than per sampled frame: its road users, then its status row."""
    tables = {"objects": _objects_table(clip_id, fs_id, objects)} if objects is not None else {}
    tables["clip_features"] = _status_row(clip_id, fs_id, "ok", None, n_frames, {
        **meta, "object_frames": objects.frames if objects is not None else None})
    return tables


def failure_rows(clip_id: str, fs_id: str, error: str, meta: dict) -> dict[str, pa.Table]:
    return {"clip_features": _status_row(clip_id, fs_id, "failed", error, None, meta)}


def store_feature_rows(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> None:
    """Replace whatever these clips had for their feature set with these rows, in the caller's transaction.
    Every clip in `tables` has its status row in `tables["clip_features"]`."""
    clear_frame_rows(con, tables["clip_features"])
    for table, data in tables.items():
        if table != "clip_features":
            insert_rows(con, table, data)
    upsert_status(con, tables["clip_features"])


def clear_frame_rows(con: duckdb.DuckDBPyConnection, status: pa.Table) -> None:
    """Delete the per-frame rows (and road users) the clips of these status rows had for their feature set."""
    for fs_id in set(status.column("feature_set_id").to_pylist()):
        ids = [c for c, f in zip(status.column("clip_id").to_pylist(), status.column("feature_set_id").to_pylist())
               if f == fs_id]
        with clip_id_table(con, ids):
            for t in _PER_FRAME_TABLES:
                con.execute(f"DELETE FROM {t} WHERE feature_set_id = ? AND clip_id IN (SELECT clip_id FROM _ids)",
                            [fs_id])


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table | pa.RecordBatch) -> None:
    if table not in _PER_FRAME_TABLES:
        raise ValueError(f"not a per-frame table: {table}")
    if data.num_rows == 0:
        return
    con.register("_rows", data)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
    finally:
        con.unregister("_rows")


def upsert_status(con: duckdb.DuckDBPyConnection, status: pa.Table) -> None:
    """The clips' clip_features rows: written last, so a clip is marked done only with all its rows."""
    cols = ", ".join(_STATUS_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _STATUS_COLUMNS if c not in ("clip_id", "feature_set_id"))
    con.register("_rows", status)
    try:
        con.execute(f"INSERT INTO clip_features ({cols}) SELECT {cols} FROM _rows"
                    f" ON CONFLICT (clip_id, feature_set_id) DO UPDATE SET {updates}, created_at = now()")
    finally:
        con.unregister("_rows")


WRITE_MEMORY_LIMIT = "512MB"


def store_spilled_clip(con: duckdb.DuckDBPyConnection, spill, n_frames: int, meta: dict, objects=None,
                       object_summary: np.ndarray | None = None) -> None:
    """Store a clip whose per-frame rows were spilled to Parquet (catalog/spill.py), replacing whatever it
    had for the feature set, in the caller's one transaction. DuckDB reads the files as it inserts, so
    the rows are never all in memory."""
    spill.close()
    # DuckDB holds a transaction's appended rows in memory up to its limit (by default most of the RAM),
    # then in its temporary file: with a small limit, a long clip's one transaction costs what a short
    # one's does (measured: 14,400 frames +0.9 GB without it, +0.5 GB with it; 57,600 frames +0.6 GB).
    con.execute(f"SET memory_limit = '{WRITE_MEMORY_LIMIT}'")
    rows = clip_rows(spill.clip_id, spill.fs_id, n_frames, meta, objects)
    clear_frame_rows(con, rows["clip_features"])
    if "objects" in rows:
        insert_rows(con, "objects", rows["objects"])
    con.execute("INSERT INTO frame_features BY NAME SELECT * FROM read_parquet(?)", [str(spill.frames_path)])
    if object_summary is None:
        con.execute("INSERT INTO motion_features BY NAME SELECT * FROM read_parquet(?)", [str(spill.motion_path)])
    else:
        con.register("_summary", summary_rows(object_summary))
        try:
            con.execute("INSERT INTO motion_features BY NAME SELECT m.*, s.object_summary FROM read_parquet(?) m"
                        " LEFT JOIN _summary s USING (frame_idx)", [str(spill.motion_path)])
        finally:
            con.unregister("_summary")
    upsert_status(con, rows["clip_features"])


def summary_rows(object_summary: np.ndarray) -> pa.Table:
    """A clip's per-frame road-user summary by frame_idx, to join onto its motion rows."""
    return pa.table({"frame_idx": pa.array(np.arange(len(object_summary), dtype=np.int32)),
                     "object_summary": float_lists(object_summary)})


def record_feature_failure(con: duckdb.DuckDBPyConnection, clip_id: str, fs_id: str, error: str, meta: dict) -> None:
    store_feature_rows(con, failure_rows(clip_id, fs_id, error, meta))


def search_frames(con: duckdb.DuckDBPyConnection, fs_id: str, vector: np.ndarray, k: int = 10) -> list[tuple]:
    """Frames most similar to `vector` (cosine), best first: (path, t_s, similarity, clip_id)."""
    d = int(len(vector))
    return con.execute(
        f"SELECT any_value(p.path) AS path, f.t_s, array_cosine_similarity(f.clip_embedding::FLOAT[{d}],"
        f" ?::FLOAT[{d}]) AS similarity, f.clip_id"
        " FROM frame_features f JOIN clip_paths p ON p.clip_id = f.clip_id"
        " WHERE f.feature_set_id = ? GROUP BY f.clip_id, f.frame_idx, f.t_s, f.clip_embedding"
        " ORDER BY similarity DESC LIMIT ?",
        [np.asarray(vector, np.float32).tolist(), fs_id, k],
    ).fetchall()
