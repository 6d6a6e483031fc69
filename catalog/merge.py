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
from catalog.features import clear_frame_rows, insert_rows, upsert_status
from catalog.staging import Staging


@dataclass
class MergeCount:
    shards: int = 0
    clips: int = 0          # clips this merge stored (done or failed)
    skipped: int = 0        # clips already done in the catalog
    seconds: float = 0.0
    results: list[tuple[str, str | None, int]] = field(default_factory=list)  # (clip_id, error, frames)


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


def merge_shard(catalog: Catalog, staging: Staging, shard: str, count: MergeCount) -> None:
    """One complete shard into the catalog in one transaction, its per-frame rows a batch at a time (a
    shard of long clips never sits in memory whole), then out of the staging area."""
    t0 = time.perf_counter()
    reader = staging.open(shard)
    status = reader.table("clip_features")
    with catalog.write() as con:
        stored = fresh_clips(con, status)
        if stored.num_rows:
            clear_frame_rows(con, stored)
            wanted = stored.column("clip_id").combine_chunks()
            for name in reader.rows:
                if name == "clip_features":
                    continue
                for batch in reader.batches(name):
                    insert_rows(con, name, batch.filter(pc.is_in(batch.column("clip_id"), wanted)))
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
    """Every complete shard of the feature set (a previous run's leftovers, or this run's)."""
    count = MergeCount()
    for shard in staging.complete(fs_id):
        merge_shard(catalog, staging, shard, count)
    return count
