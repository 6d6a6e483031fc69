"""The merge reads workers' shards as untrusted input: each of seven bad shards is set aside under
rejected/ with its reason, counted, and the good shards beside it still merge; nothing outside the
staging folder is opened, and no wrong row reaches the catalog."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog import Catalog
from catalog.merge import merge_staged
from catalog.staging import MANIFEST, REJECTED
from nearmiss.cli import main

from test_distributed import _one_shard, table


@pytest.fixture(scope="module")
def good_shard(synth_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    db, staging, shard, fs_id = _one_shard(synth_dir, root)
    keep = root / "pristine"
    shutil.copytree(shard, keep)
    shutil.rmtree(shard)
    return db, staging, Path(shard), fs_id, keep


def _rewrite(path: Path, change) -> None:
    t = pq.read_table(path)
    pq.write_table(change(t), path)


def _nan_embedding(t: pa.Table) -> pa.Table:
    emb = t.column("clip_embedding").to_pylist()
    emb[0] = [float("nan")] * len(emb[0])
    return t.set_column(t.schema.get_field_index("clip_embedding"), "clip_embedding",
                        pa.array(emb, t.schema.field("clip_embedding").type))


def _foreign_clip(t: pa.Table) -> pa.Table:
    ids = ["f" * 64] * t.num_rows
    return t.set_column(t.schema.get_field_index("clip_id"), "clip_id", pa.array(ids, pa.string()))


def _bad(kind: str, shard: Path, outside: Path) -> None:
    manifest = json.loads((shard / MANIFEST).read_text())
    if kind == "unknown clip":          # rows (status and all) for a clip id the catalog has never seen
        for name in manifest["rows"]:
            _rewrite(shard / f"{name}.parquet", _foreign_clip)
    elif kind == "nan embedding":
        _rewrite(shard / "frame_features.parquet", _nan_embedding)
    elif kind == "symlink out":         # a table file that is a link to a file outside staging
        shutil.copy(shard / "frame_features.parquet", outside / "frame_features.parquet")
        os.remove(shard / "frame_features.parquet")
        os.symlink(outside / "frame_features.parquet", shard / "frame_features.parquet")
    elif kind == "path in manifest":    # a table name that is a path out of the staging folder
        manifest["rows"]["../../../outside/frame_features"] = manifest["rows"].pop("frame_features")
    elif kind == "wrong schema":
        _rewrite(shard / "motion_features.parquet", lambda t: t.rename_columns(
            ["ego_speed_renamed" if c == "ego_speed" else c for c in t.column_names]))
    elif kind == "unknown table":
        shutil.copy(shard / "frame_features.parquet", shard / "evil.parquet")
        manifest["rows"]["evil"] = manifest["rows"]["frame_features"]
    elif kind == "row count lies":
        manifest["rows"]["frame_features"] += 5
    (shard / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["unknown clip", "nan embedding", "symlink out", "path in manifest",
                                  "wrong schema", "unknown table", "row count lies"])
def test_a_bad_shard_is_set_aside_and_the_good_one_merges(good_shard, tmp_path, kind, monkeypatch, capsys):
    base_db, staging_base, shard_path, fs_id, pristine = good_shard
    db = str(tmp_path / "catalog.duckdb")
    shutil.copy(base_db, db)
    from catalog.staging import Staging
    staging = Staging(str(tmp_path / "staging"))
    bad = tmp_path / "staging" / fs_id / "20000101T000000-bad"
    good = tmp_path / "staging" / fs_id / "20000101T000001-good"
    shutil.copytree(pristine, bad)
    shutil.copytree(pristine, good)
    outside = tmp_path / "outside"
    outside.mkdir()
    _bad(kind, bad, outside)
    opened = []
    real_open = open

    def watch(path, *a, **k):   # nothing outside the staging folder (and the catalog's) is opened
        opened.append(str(path))
        return real_open(path, *a, **k)
    monkeypatch.setattr("builtins.open", watch)
    before = table(db, "SELECT count(*) FROM clip_features")
    count = merge_staged(Catalog(db), staging, fs_id)
    monkeypatch.undo()
    assert [s for s, _ in count.rejected] == ["20000101T000000-bad"] and count.shards == 1, count.rejected
    reason = (tmp_path / "staging" / REJECTED / fs_id / "20000101T000000-bad" / "REASON.txt").read_text()
    assert reason.strip() == count.rejected[0][1]
    assert not any(str(outside) in p for p in opened)
    assert staging.complete(fs_id) == []                       # neither is read again
    assert table(db, "SELECT count(*) FROM clip_features") == [(before[0][0] + 2,)]   # the good shard's clips
    assert table(db, "SELECT count(*) FROM clip_features c LEFT JOIN clips k ON k.id = c.clip_id"
                     " WHERE k.id IS NULL") == [(0,)]
    rows = table(db, "SELECT clip_embedding FROM frame_features")
    assert all(np.isfinite(np.asarray(r[0], np.float64)).all() for r in rows)
    assert main(["--db", db, "check"]) == 0
