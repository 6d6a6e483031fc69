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
from catalog.features import store_feature_rows
from catalog.staging import Staging


@dataclass
class MergeCount:
    shards: int = 0
    clips: int = 0          # clips this merge stored (done or failed)
    skipped: int = 0        # clips already done in the catalog
    seconds: float = 0.0
    results: list[tuple[str, str | None, int]] = field(default_factory=list)  # (clip_id, error, frames)


def merge_tables(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> tuple[pa.Table, int]:
    """Store the shard's clips that the catalog does not hold as done; returns (their status rows, skipped)."""
    status = tables["clip_features"]
    if status.num_rows == 0:
        return status, 0
    fs_ids = set(status.column("feature_set_id").to_pylist())
    done: set[tuple[str, str]] = set()
    with clip_id_table(con, status.column("clip_id").to_pylist()):
        for fs_id in fs_ids:
            done |= {(r[0], fs_id) for r in con.execute(
                "SELECT clip_id FROM clip_features WHERE feature_set_id = ? AND status = 'ok'"
                " AND clip_id IN (SELECT clip_id FROM _ids)", [fs_id]).fetchall()}
    fresh_ids = [c for c, f in zip(status.column("clip_id").to_pylist(), status.column("feature_set_id").to_pylist())
                 if (c, f) not in done]
    keep = {name: t.filter(pc.is_in(t.column("clip_id"), pa.array(fresh_ids, pa.string())))
            for name, t in tables.items()}
    if keep["clip_features"].num_rows:
        store_feature_rows(con, keep)
    return keep["clip_features"], status.num_rows - keep["clip_features"].num_rows


def merge_shard(catalog: Catalog, staging: Staging, shard: str, count: MergeCount) -> None:
    """One complete shard into the catalog, then out of the staging area."""
    t0 = time.perf_counter()
    tables = staging.read(shard)
    with catalog.write() as con:
        stored, skipped = merge_tables(con, tables)
    staging.remove(shard)  # after the commit: a crash in between only means merging it again, which adds nothing
    count.shards += 1
    count.clips += stored.num_rows
    count.skipped += skipped
    count.results += [(c, e, n or 0) for c, e, n in zip(stored.column("clip_id").to_pylist(),
                                                         stored.column("error").to_pylist(),
                                                         stored.column("n_frames").to_pylist())]
    count.seconds += time.perf_counter() - t0


def merge_staged(catalog: Catalog, staging: Staging, fs_id: str) -> MergeCount:
    """Every complete shard of the feature set (a previous run's leftovers, or this run's)."""
    count = MergeCount()
    for shard in staging.complete(fs_id):
        merge_shard(catalog, staging, shard, count)
    return count
