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
        """Write one shard; it becomes visible to the merge only when its manifest lands."""
        fs, root = self._fs()
        folder = f"{root}/{fs_id}/{shard_id}"
        fs.makedirs(folder, exist_ok=True)
        rows = {}
        for name, table in tables.items():
            with fs.open(f"{folder}/{name}.parquet", "wb") as f:
                pq.write_table(table, f)
            rows[name] = table.num_rows
        with fs.open(f"{folder}/{MANIFEST}.tmp", "w") as f:
            json.dump({"feature_set_id": fs_id, "rows": rows}, f)
        fs.mv(f"{folder}/{MANIFEST}.tmp", f"{folder}/{MANIFEST}")  # a rename: atomic on a file system
        return folder

    def complete(self, fs_id: str) -> list[str]:
        """Shards with a manifest, oldest first."""
        fs, root = self._fs()
        if not fs.exists(f"{root}/{fs_id}"):
            return []
        manifests = fs.glob(f"{root}/{fs_id}/*/{MANIFEST}")
        return sorted(m.rsplit("/", 1)[0] for m in manifests)

    def read(self, shard: str) -> dict[str, pa.Table]:
        """A complete shard's tables; a row count that disagrees with the manifest is an error, not a merge."""
        fs, _ = self._fs()
        with fs.open(f"{shard}/{MANIFEST}") as f:
            rows = json.load(f)["rows"]
        tables = {}
        for name, n in rows.items():
            with fs.open(f"{shard}/{name}.parquet", "rb") as f:
                tables[name] = pq.read_table(f)
            if tables[name].num_rows != n:
                raise ValueError(f"shard {shard}: {name} has {tables[name].num_rows} rows, its manifest says {n}")
        return tables

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
