"""The staging area between workers and the catalog: one Parquet shard per chunk of clips.

Workers never open the catalog (DuckDB allows one writer, and it may be on another machine). Each
worker writes the rows its chunk adds, one Parquet file per table, into its own shard folder, and
writes the shard's manifest last, through a temporary name renamed into place. A shard without a
manifest is unfinished (a worker still writing, or one that died) and is never read. The merge
(catalog/merge.py) is the only writer of the catalog.

The staging root is a local or shared folder, or any fsspec URL the workers and the driver can both
reach (NFS, s3://, gs://).
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "_SUCCESS.json"
REJECTED = "rejected"          # shards that failed validation, each with a reason file, under the root
SHARD_TABLES = ("clip_features", "frame_features", "motion_features", "objects")   # the only names a shard may use


class ShardRejected(ValueError):
    """A shard that is not what a worker writes: set aside, never merged."""


def new_shard_id() -> str:
    """Unique per attempt: a chunk redone after its worker died never shares a folder with the dead one."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Staging:
    url: str

    @classmethod
    def beside(cls, db: str) -> "Staging":
        """The default: a folder next to the catalog file (nearmiss.duckdb -> nearmiss.staging)."""
        return cls(str(Path(db).expanduser().resolve().with_suffix(".staging")))

    def _fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, root = fsspec.core.url_to_fs(self.url)
        return fs, root.rstrip("/")

    def write(self, fs_id: str, shard_id: str, tables: dict[str, pa.Table]) -> str:
        """Write one shard from whole tables; it becomes visible to the merge only when its manifest lands."""
        shard = ShardWriter(self, fs_id, shard_id)
        for name, table in tables.items():
            shard.append(name, table)
        return shard.finish()

    def complete(self, fs_id: str) -> list[str]:
        """Shards with a manifest, oldest first."""
        fs, root = self._fs()
        if not fs.exists(f"{root}/{fs_id}"):
            return []
        manifests = fs.glob(f"{root}/{fs_id}/*/{MANIFEST}")
        return sorted(m.rsplit("/", 1)[0] for m in manifests)

    def read(self, shard: str) -> dict[str, pa.Table]:
        """A complete shard's tables, whole (small shards, tests); the merge reads them in batches."""
        reader = self.open(shard)
        return {name: reader.table(name) for name in reader.rows}

    def open(self, shard: str) -> "ShardReader":
        return ShardReader(self, shard)

    def reject(self, shard: str, reason: str) -> str:
        """Set a shard aside under rejected/ with a file saying why; the merge never reads it again."""
        fs, root = self._fs()
        fs_id, shard_id = shard.rstrip("/").rsplit("/", 2)[-2:]
        target = f"{root}/{REJECTED}/{fs_id}/{shard_id}"
        fs.makedirs(f"{root}/{REJECTED}/{fs_id}", exist_ok=True)
        fs.mv(shard, target, recursive=True)
        with fs.open(f"{target}/REASON.txt", "w") as f:
            f.write(reason + "\n")
        return target

    def remove(self, shard: str) -> None:
        fs, _ = self._fs()
        if fs.exists(shard):
            fs.rm(shard, recursive=True)

    def sweep_unfinished(self, fs_id: str, older_than_s: float = 3600.0) -> int:
        """Remove shards a dead worker left without a manifest, once old enough that no worker is still
        writing them. Returns how many were removed."""
        fs, root = self._fs()
        if not fs.exists(f"{root}/{fs_id}"):
            return 0
        removed = 0
        for folder in fs.ls(f"{root}/{fs_id}", detail=False):
            if fs.exists(f"{folder}/{MANIFEST}"):
                continue
            files = fs.ls(folder, detail=True)
            newest = max((_mtime(f) for f in files), default=_mtime(fs.info(folder)))
            if newest is not None and time.time() - newest > older_than_s:
                fs.rm(folder, recursive=True)
                removed += 1
        return removed


def _mtime(info: dict) -> float | None:
    value = info.get("mtime", info.get("LastModified"))
    return value.timestamp() if hasattr(value, "timestamp") else value


class ShardWriter:
    """One shard being written a table's rows at a time, so a worker never holds its chunk's rows; the
    merge sees it only once finish() has renamed its manifest into place."""

    def __init__(self, staging: Staging, fs_id: str, shard_id: str):
        self.fs, root = staging._fs()
        self.fs_id, self.folder = fs_id, f"{root}/{fs_id}/{shard_id}"
        self.fs.makedirs(self.folder, exist_ok=True)
        self.rows: dict[str, int] = {}
        self._files: dict = {}
        self._writers: dict[str, pq.ParquetWriter] = {}

    def append(self, name: str, table: pa.Table) -> None:
        if name not in self._writers:
            self._files[name] = self.fs.open(f"{self.folder}/{name}.parquet", "wb")
            self._writers[name] = pq.ParquetWriter(self._files[name], table.schema)
            self.rows[name] = 0
        writer = self._writers[name]
        if table.schema != writer.schema:  # an all-null column of one clip, typed by the first
            table = table.cast(writer.schema)
        writer.write_table(table)
        self.rows[name] += table.num_rows

    def _close(self) -> None:
        for name in list(self._writers):
            self._writers.pop(name).close()
            self._files.pop(name).close()

    def finish(self) -> str:
        self._close()
        with self.fs.open(f"{self.folder}/{MANIFEST}.tmp", "w") as f:
            json.dump({"feature_set_id": self.fs_id, "rows": self.rows}, f)
        self.fs.mv(f"{self.folder}/{MANIFEST}.tmp", f"{self.folder}/{MANIFEST}")  # a rename: atomic on a file system
        return self.folder

    def abort(self) -> None:
        self._close()
        if self.fs.exists(self.folder):
            self.fs.rm(self.folder, recursive=True)


class ShardReader:
    """A complete shard, read as untrusted input: its manifest names tables from a fixed set (never paths),
    every file is a regular file inside the shard (no links), and each file's footer holds the rows the
    manifest counts; its schema is kept for the merge to check. Anything else is ShardRejected."""

    def __init__(self, staging: Staging, shard: str):
        self.fs, _ = staging._fs()
        self.shard = shard
        self._regular(f"{shard}/{MANIFEST}")
        try:
            with self.fs.open(f"{shard}/{MANIFEST}") as f:
                rows = json.load(f)["rows"]
            self.rows: dict[str, int] = {str(k): int(v) for k, v in rows.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ShardRejected(f"its manifest is not a shard manifest ({type(exc).__name__}: {exc})") from None
        unknown = sorted(set(self.rows) - set(SHARD_TABLES))
        if unknown:
            raise ShardRejected(f"its manifest names tables a shard never has: {', '.join(map(repr, unknown))}")
        if self.rows and "clip_features" not in self.rows:
            raise ShardRejected("its manifest has rows but no clip_features table to say whose")
        self.schemas: dict[str, pa.Schema] = {}
        for name, n in self.rows.items():
            path = f"{shard}/{name}.parquet"
            self._regular(path)
            try:
                with self.fs.open(path, "rb") as f:
                    meta = pq.ParquetFile(f)
                    found, self.schemas[name] = meta.metadata.num_rows, meta.schema_arrow
            except (OSError, pa.ArrowException) as exc:
                raise ShardRejected(f"{name}.parquet is not a readable Parquet file ({exc})") from None
            if found != n:
                raise ShardRejected(f"{name} has {found} rows, its manifest says {n}")

    def _regular(self, path: str) -> None:
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise ShardRejected(f"{path.rsplit('/', 1)[-1]} is missing") from None
        if info.get("islink") or info.get("type") != "file":
            raise ShardRejected(f"{path.rsplit('/', 1)[-1]} is not a regular file inside the shard (a link, or a "
                                "folder): not followed")

    def table(self, name: str) -> pa.Table:
        with self.fs.open(f"{self.shard}/{name}.parquet", "rb") as f:
            return pq.read_table(f)

    def batches(self, name: str, rows: int = 1024):
        """The table's rows a batch at a time."""
        with self.fs.open(f"{self.shard}/{name}.parquet", "rb") as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=rows)

