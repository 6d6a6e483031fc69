"""What the heads read: stored feature sequences (with tracked road users) and labels."""
from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.connection import clip_id_table
from contracts.flow_stacks import unpack_stacks
from contracts.sequences import MOTION_GRIDS, MOTION_SCALARS, ClipLabel, ClipObjects, Sequences



def _matrix(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if len(col) == 0:
        return np.zeros((0, 0), np.float32)
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    if values.size == 0:  # empty lists: a feature set without CLIP
        return np.zeros((len(col), 0), np.float32)
    return values.astype(np.float32, copy=False).reshape(len(col), -1)


def _rows(con, table: str, columns: str, fs_id: str) -> pa.Table:
    # A semi-join and no ORDER BY: rows come in storage order, where each clip's frames were written
    # together; sorting wide list rows in DuckDB would cost more than the whole read.
    return con.sql(f"SELECT clip_id, frame_idx, {columns} FROM {table} WHERE feature_set_id = ?"
                   " AND clip_id IN (SELECT clip_id FROM _wanted)", params=[fs_id]).to_arrow_table()


def _grouping(ids: np.ndarray, frame_idx: np.ndarray):
    """(row order, clip ids in that order, rows per clip): no reordering when rows already come grouped."""
    n = len(ids)
    if n == 0:
        return slice(None), np.array([], object), np.array([], np.int64)
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], change])
    same = ids[1:] == ids[:-1]
    if len(np.unique(ids[starts])) == len(starts) and np.all(frame_idx[1:][same] > frame_idx[:-1][same]):
        return slice(None), ids[starts], np.diff(np.append(starts, n))
    perm = np.lexsort((frame_idx, ids))
    sorted_ids = ids[perm]
    first = np.concatenate([[0], np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1])
    return perm, sorted_ids[first], np.diff(np.append(first, n))


def _flow_matrix(con: duckdb.DuckDBPyConnection, fs_id: str, motion: pa.Table) -> np.ndarray:
    """(rows, 4 * stack cells) flow stacks: full precision where `flow_stack` holds them, else unpacked from
    the 8-bit `flow_q` the cascade stores (contracts/flow_stacks.py) at the feature set's stack size."""
    full = motion.column("flow_stack").combine_chunks()
    if full.null_count == 0:
        return _matrix(motion, "flow_stack")
    config = json.loads(con.execute("SELECT config FROM feature_sets WHERE id = ?", [fs_id]).fetchall()[0][0])
    stack = tuple(config["motion"]["stack"])
    coarse = (config.get("objects") or {}).get("coarse_stack")
    out = np.zeros((len(full), 4 * stack[0] * stack[1]), np.float32)
    packed = np.asarray(full.is_null())
    q = motion.column("flow_q").combine_chunks().filter(pa.array(packed))
    values, offsets = q.values.to_numpy(zero_copy_only=False), q.offsets.to_numpy()
    out[packed] = unpack_stacks([values[a:b] for a, b in zip(offsets[:-1], offsets[1:])],
                                _matrix(motion.filter(pa.array(packed)), "flow_scale"), stack,
                                tuple(coarse) if coarse else None)
    if not packed.all():
        out[~packed] = _matrix(motion.filter(pa.array(~packed)), "flow_stack")
    return out


def _nearest_rows(f_ids: np.ndarray, f_idx: np.ndarray, ids: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """For each frame (ids, idx), the row of (f_ids, f_idx) of the same clip nearest it: with the triage cascade
    CLIP embeds every frame inside its windows and a few a second elsewhere, and a frame between two embedded
    ones reads the nearer's embedding."""
    names, codes = np.unique(np.concatenate([f_ids, ids]), return_inverse=True)
    f_key = codes[:len(f_ids)].astype(np.int64) << 32 | f_idx.astype(np.int64)
    key = codes[len(f_ids):].astype(np.int64) << 32 | idx.astype(np.int64)
    order = np.argsort(f_key, kind="stable")
    sorted_key = f_key[order]
    after = np.clip(np.searchsorted(sorted_key, key, side="left"), 0, max(len(order) - 1, 0))
    before = np.clip(after - 1, 0, None)
    same = lambda j: (sorted_key[j] >> 32) == (key >> 32)  # noqa: E731
    if len(key) and not (same(after) | same(before)).all():
        missing = names[(key >> 32)[~(same(after) | same(before))][0]]
        raise ValueError(f"clip {str(missing)[:16]} has motion rows but no frame rows in this feature set")
    gap = lambda j: np.where(same(j), np.abs((sorted_key[j] & 0xFFFFFFFF) - (key & 0xFFFFFFFF)), np.inf)  # noqa: E731
    return order[np.where(gap(after) <= gap(before), after, before)]


def _object_rate(con: duckdb.DuckDBPyConnection, fs_id: str) -> float | None:
    """The detector's frame rate when the feature set tracks objects, else None."""
    rows = con.execute("SELECT config FROM feature_sets WHERE id = ?", [fs_id]).fetchall()
    objects = json.loads(rows[0][0]).get("objects") if rows else None
    return float(objects["fps"]) if objects else None


def load_objects(con: duckdb.DuckDBPyConnection, fs_id: str, clip_ids: list[str], fps: float) -> dict:
    """clip_id -> ClipObjects for these clips (a clip with no road user gets empty rows)."""
    with clip_id_table(con, clip_ids, "_wanted"):
        frames = dict(con.execute("SELECT clip_id, object_frames FROM clip_features WHERE feature_set_id = ?"
                                  " AND clip_id IN (SELECT clip_id FROM _wanted)", [fs_id]).fetchall())
        aspect = dict(con.execute("SELECT id, width / height FROM clips WHERE id IN (SELECT clip_id FROM _wanted)"
                                  " AND width > 0 AND height > 0").fetchall())
        t = con.sql("SELECT clip_id, t_s, track_id, class, score, ttc_s, path_gap, in_path, entering, x1, y1, x2, y2,"
                    " coco_class FROM objects WHERE feature_set_id = ? AND clip_id IN (SELECT clip_id FROM _wanted)"
                    " ORDER BY clip_id, t_s, track_id", params=[fs_id]).to_arrow_table()
    cols = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
    cols["cls"], cols["coco"] = cols["class"].astype(str), cols["coco_class"].astype(str)   # once, not per clip
    cols["boxes"] = np.stack([cols[c] for c in ("x1", "y1", "x2", "y2")], 1).astype(np.float32)
    out = {}
    ids = cols["clip_id"]   # sorted by clip: each clip's rows are one slice (a mask per clip: quadratic in clips)
    first = np.searchsorted(ids, np.array(list(frames), dtype=object), side="left") if len(ids) else None
    last = np.searchsorted(ids, np.array(list(frames), dtype=object), side="right") if len(ids) else None
    for k, (cid, n) in enumerate(frames.items()):
        m = slice(first[k], last[k]) if first is not None else slice(0, 0)
        out[cid] = ClipObjects(
            step_t_s=np.arange(n or 0) / fps, t_s=cols["t_s"][m].astype(np.float64),
            track_id=cols["track_id"][m].astype(np.int32), cls=cols["cls"][m],
            score=cols["score"][m].astype(np.float32), ttc_s=cols["ttc_s"][m].astype(np.float64),
            path_gap=cols["path_gap"][m].astype(np.float32), in_path=cols["in_path"][m].astype(bool),
            entering=cols["entering"][m].astype(bool),
            boxes=cols["boxes"][m], coco=cols["coco"][m], aspect=float(aspect.get(cid) or 16 / 9))
    return out


def load_sequences(con: duckdb.DuckDBPyConnection, fs_id: str, clip_ids: list[str],
                   with_flow: bool = False, with_embeddings: bool = True) -> Sequences:
    """Features of these clips, grouped by clip (in storage order; clips without features are left out).
    When the feature set tracks objects, their per-frame summary joins the motion stream and the
    tracked rows come along for heads that read them."""
    object_fps = _object_rate(con, fs_id)
    with clip_id_table(con, clip_ids, "_wanted"):
        frames = _rows(con, "frame_features", "t_s" + (", clip_embedding, embclip" if with_embeddings else ""), fs_id)
        motion = _rows(con, "motion_features", ", ".join(("t_s",) + MOTION_SCALARS + MOTION_GRIDS)
                       + (", flow_stack, flow_q, flow_scale" if with_flow else "")
                       + (", object_summary" if object_fps else ""), fs_id)
    keys = lambda t: (t.column("clip_id").to_numpy(zero_copy_only=False),  # noqa: E731
                      t.column("frame_idx").to_numpy())
    m_ids, m_idx = keys(motion)
    m_perm, present, counts = _grouping(m_ids, m_idx)   # every sampled frame has motion rows
    f_ids, f_idx = keys(frames)
    if len(m_ids) == len(f_ids) and np.array_equal(m_ids, f_ids) and np.array_equal(m_idx, f_idx):
        perm = m_perm  # written together, stored alike: the usual case
    else:   # CLIP embedded some frames only (the triage cascade), or the rows are stored in another order
        ordered = np.arange(len(m_ids))[m_perm]
        perm = _nearest_rows(f_ids, f_idx, m_ids[ordered], m_idx[ordered])
    n = len(m_ids)
    col = lambda t, name, p: t.column(name).to_numpy(zero_copy_only=False).astype(np.float32)[p]  # noqa: E731
    mat = lambda t, name, p: _matrix(t, name)[p] if n else np.zeros((0, 0), np.float32)  # noqa: E731
    scalars = np.stack([col(motion, c, m_perm) for c in MOTION_SCALARS], 1) if n \
        else np.zeros((0, len(MOTION_SCALARS)), np.float32)
    grids = MOTION_GRIDS + (("object_summary",) if object_fps else ())
    motion_x = np.concatenate([scalars] + [mat(motion, c, m_perm) for c in grids], 1) if n else scalars
    embclip = None
    if with_embeddings and n and frames.column("embclip").null_count == 0:
        embclip = mat(frames, "embclip", perm)
    objects = None
    if object_fps:
        by_clip = load_objects(con, fs_id, [str(c) for c in present], object_fps)
        objects = [by_clip[str(c)] for c in present]
    return Sequences(
        clip_ids=[str(c) for c in present],
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        times=col(motion, "t_s", m_perm),
        clip=mat(frames, "clip_embedding", perm) if with_embeddings else np.zeros((n, 0), np.float32),
        embclip=embclip,
        motion=motion_x,
        flow=(_flow_matrix(con, fs_id, motion)[m_perm] if n else np.zeros((0, 0), np.float32))
        if with_flow else None,
        objects=objects,
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
