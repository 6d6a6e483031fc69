"""Move complete shards from the staging area into the catalog: the only writer when workers featurize.

Idempotent: a clip already stored as done is skipped (an anti-join on its status row), so a shard
merged twice, or a chunk a dead worker had half-finished and another redid, adds nothing the second
time. Each shard goes in one transaction and is removed only after it commits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from catalog.connection import Catalog, clip_id_table
from contracts.columns import MOTION_SCALARS
from catalog.features import clear_frame_rows, insert_rows, upsert_status
from catalog.staging import ShardRejected, Staging


@dataclass
class MergeCount:
    shards: int = 0
    clips: int = 0          # clips this merge stored (done or failed)
    skipped: int = 0        # clips already done in the catalog
    seconds: float = 0.0
    results: list[tuple[str, str | None, int]] = field(default_factory=list)  # (clip_id, error, frames)
    rejected: list[tuple[str, str]] = field(default_factory=list)   # (shard, why): set aside under rejected/


def fresh_clips(con: duckdb.DuckDBPyConnection, status: pa.Table) -> pa.Table:
    """The status rows of clips the catalog does not hold as done (the anti-join that makes merging idempotent)."""
    if status.num_rows == 0:
        return status
    done: set[tuple[str, str]] = set()
    with clip_id_table(con, status.column("clip_id").to_pylist()):
        for fs_id in set(status.column("feature_set_id").to_pylist()):
            done |= {(r[0], fs_id) for r in con.execute(
                "SELECT clip_id FROM clip_features WHERE feature_set_id = ? AND status = 'ok'"
                " AND clip_id IN (SELECT clip_id FROM _ids)", [fs_id]).fetchall()}
    keys = zip(status.column("clip_id").to_pylist(), status.column("feature_set_id").to_pylist())
    return status.filter(pa.array([k not in done for k in keys], pa.bool_()))


def merge_shard(catalog: Catalog, staging: Staging, shard: str, count: MergeCount, fs_id: str) -> None:
    """One complete shard into the catalog in one transaction, its per-frame rows a batch at a time (a
    shard of long clips never sits in memory whole), then out of the staging area. Every row is checked
    as untrusted input first (check_batch); a shard that fails is rolled back whole: ShardRejected."""
    t0 = time.perf_counter()
    reader = staging.open(shard)
    if "clip_features" not in reader.rows:   # a chunk that stored nothing: nothing to merge
        staging.remove(shard)
        count.shards += 1
        return
    status = reader.table("clip_features")
    with catalog.write() as con:
        durations = _pending_clips(con, status, fs_id)
        for name, schema in reader.schemas.items():
            _check_schema(con, name, schema)
        stored = fresh_clips(con, status)
        if stored.num_rows:
            clear_frame_rows(con, stored)
            wanted = stored.column("clip_id").combine_chunks()
            for name in reader.rows:
                if name == "clip_features":
                    continue
                for batch in reader.batches(name):
                    check_batch(name, batch, durations, fs_id)
                    try:
                        insert_rows(con, name, batch.filter(pc.is_in(batch.column("clip_id"), wanted)))
                    except duckdb.Error as exc:
                        raise ShardRejected(f"{name}: rows the catalog refuses ({str(exc).splitlines()[0]})") from None
            upsert_status(con, stored)
    staging.remove(shard)  # after the commit: a crash in between only means merging it again, which adds nothing
    count.shards += 1
    count.clips += stored.num_rows
    count.skipped += status.num_rows - stored.num_rows
    count.results += [(c, e, n or 0) for c, e, n in zip(stored.column("clip_id").to_pylist(),
                                                         stored.column("error").to_pylist(),
                                                         stored.column("n_frames").to_pylist())]
    count.seconds += time.perf_counter() - t0


def merge_staged(catalog: Catalog, staging: Staging, fs_id: str) -> MergeCount:
    """Every complete shard of the feature set (a previous run's leftovers, or this run's). A shard that fails
    validation is set aside under rejected/ with its reason, counted, and the rest go on."""
    count = MergeCount()
    for shard in staging.complete(fs_id):
        merge_or_reject(catalog, staging, shard, count, fs_id)
    return count


def merge_or_reject(catalog: Catalog, staging: Staging, shard: str, count: MergeCount, fs_id: str) -> None:
    try:
        merge_shard(catalog, staging, shard, count, fs_id)
    except ShardRejected as exc:
        staging.reject(shard, str(exc))
        count.rejected.append((shard.rsplit("/", 1)[-1], str(exc)))


def _pending_clips(con: duckdb.DuckDBPyConnection, status: pa.Table, fs_id: str) -> dict[str, float]:
    """clip_id -> duration of every clip the shard's status rows name; each must be an ingested clip of this
    feature set's merge (a clip id the catalog does not hold is refused, not stored)."""
    if set(status.column("feature_set_id").to_pylist()) - {fs_id}:
        raise ShardRejected(f"rows for another feature set than {fs_id}")
    ids = status.column("clip_id").to_pylist()
    with clip_id_table(con, ids):
        known = dict(con.execute("SELECT id, coalesce(duration_s, 0) FROM clips WHERE status = 'ok'"
                                 " AND id IN (SELECT clip_id FROM _ids)").fetchall())
    missing = sorted(set(ids) - set(known))
    if missing:
        raise ShardRejected(f"rows for {len(missing)} clip(s) the catalog does not hold as ingested "
                            f"(e.g. {str(missing[0])[:16]})")
    return known


def _check_schema(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    expected = [c[0] for c in con.execute(f"DESCRIBE {name}").fetchall()]   # name from SHARD_TABLES only
    extra = sorted(set(schema.names) - set(expected))
    missing = sorted(set(expected) - set(schema.names) - _OPTIONAL[name])
    if extra or missing:
        raise ShardRejected(f"{name} has the wrong columns (unknown: {extra or 'none'}; missing: {missing or 'none'})")


# Columns a shard may leave out: the catalog fills them (created_at) or they come later (object_summary).
_OPTIONAL = {"clip_features": {"created_at"}, "frame_features": set(), "motion_features": {"object_summary"},
             "objects": set()}
_LIST_COLUMNS = {"frame_features": ("clip_embedding", "embclip"),
                 "motion_features": ("fg_energy", "fg_area", "fg_expansion", "flow_stack", "flow_scale",
                                     "object_summary")}
_SCALARS = {"motion_features": MOTION_SCALARS,
            "objects": ("score", "scale_rate")}   # ttc_s and path_gap are infinite by design (not approaching, no path)


def check_batch(name: str, batch: pa.RecordBatch, durations: dict[str, float], fs_id: str) -> None:
    """Rows as a worker writes them: for clips this shard owns, finite numbers, times within the clip,
    boxes within the frame."""
    ids = set(batch.column("clip_id").to_pylist())
    if ids - set(durations):
        raise ShardRejected(f"{name}: rows for clips the shard's status rows do not name")
    if set(batch.column("feature_set_id").to_pylist()) - {fs_id}:
        raise ShardRejected(f"{name}: rows for another feature set than {fs_id}")
    for col in _LIST_COLUMNS.get(name, ()):
        if col in batch.schema.names:
            values = pc.list_flatten(batch.column(col))
            if len(values) and not pc.all(pc.is_finite(values)).as_py():
                raise ShardRejected(f"{name}.{col}: values that are not finite (NaN or infinity)")
    for col in _SCALARS.get(name, ()):
        values = batch.column(col)
        if len(values) and not pc.all(pc.or_(pc.is_finite(values), pc.is_null(values))).as_py():
            raise ShardRejected(f"{name}.{col}: values that are not finite (NaN or infinity)")
    if "t_s" in batch.schema.names and len(batch):
        t = batch.column("t_s").to_numpy(zero_copy_only=False)
        limit = [durations[c] + 1.0 for c in batch.column("clip_id").to_pylist()]
        if (t < -0.5).any() or (t > limit).any():
            raise ShardRejected(f"{name}: times outside their clip")
    if name == "objects" and len(batch):
        for col in ("x1", "y1", "x2", "y2"):
            v = batch.column(col).to_numpy(zero_copy_only=False)
            if not ((v >= -0.01) & (v <= 1.01)).all():
                raise ShardRejected(f"objects.{col}: boxes outside the frame")
