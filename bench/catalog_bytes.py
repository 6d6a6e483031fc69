"""What a fleet's video costs on disk: catalog bytes per video-minute (motion + objects), dense against the cascade.

    python bench/catalog_bytes.py [--work /tmp/catalog_bytes] [--object-base-fps 2.5] [--written-copies 300]

Builds (or reuses) two development catalogs with `bench/real_clips.py`'s recipe over the real clips: one dense (the
detector on every frame, full-precision flow stacks), one with the triage cascade (stacks at 8 bits, every cell only
inside its windows). Each is measured as a user's catalog is: the file's size after a CHECKPOINT. Then each table
alone, copied into an empty file (the file's own overhead is the smallest table's 1 block); beside the file, its size
beyond an empty catalog's (a block per table, paid once), from which a fleet-year (100 vehicles, 8 hours a day) is
reckoned.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import real_clips as rc  # noqa: E402
from catalog import Catalog  # noqa: E402
from pipeline.specs import ObjectsSpec  # noqa: E402

SCALED_TABLES = ("motion_features", "frame_features", "objects", "clip_features")   # the rows a clip adds
TABLES = ("motion_features", "objects", "frame_features", "clip_features", "clips", "clip_paths", "labels")
FLEET_YEAR_MIN = 100 * 8 * 60 * 365


def file_mb(db: str) -> float:
    con = duckdb.connect(db)
    con.execute("CHECKPOINT")
    con.close()
    return os.path.getsize(db) / 1e6


def table_mb(db: str, table: str, fs_id: str | None) -> float:
    """One table's rows (of this feature set) alone in a new file, less an empty file's size."""
    with tempfile.TemporaryDirectory() as tmp:
        sizes = []
        for sql in ("SELECT 1 AS x", f"SELECT * FROM src.{table}"
                    + (" WHERE feature_set_id = ?" if fs_id else "")):
            out = os.path.join(tmp, f"{len(sizes)}.duckdb")
            con = duckdb.connect(out)
            con.execute(f"ATTACH '{db}' AS src (READ_ONLY)")
            con.execute(f"CREATE TABLE t AS {sql}", [fs_id] if fs_id and "?" in sql else [])
            con.execute("DETACH src")
            con.execute("CHECKPOINT")
            con.close()
            sizes.append(os.path.getsize(out))
    return max(sizes[1] - sizes[0], 0) / 1e6


def fleet_scale_mb(db: str, fs_id: str, copies: int, work: Path) -> float:
    """MB a catalog holding `copies` copies of these clips' feature rows takes beyond an empty one: what each video-
    minute adds at a fleet's scale, where the file's per-table blocks and a checkpoint's free blocks (each checkpoint
    rewrites a table's last row group of 122,880 rows; their old blocks are reused later) no longer count. The rows
    are the real ones, each copy under other clip ids (DuckDB compresses values within a segment, never across),
    written in one transaction per table: at a fleet's scale a checkpoint's freed blocks are a bounded remainder."""
    out = work / "fleet.duckdb"
    out.unlink(missing_ok=True)
    Catalog(str(out)).ensure()
    con = duckdb.connect(str(out))
    con.execute(f"ATTACH '{db}' AS src (READ_ONLY)")
    for table in SCALED_TABLES:   # in one statement each, copy after copy, each clip's rows together
        con.execute(f"INSERT INTO {table} BY NAME SELECT * EXCLUDE (k) FROM (SELECT * REPLACE (clip_id || '-' || k AS"
                    f" clip_id) FROM src.{table}, range(?) r(k) WHERE feature_set_id = ?) ORDER BY k, clip_id",
                    [copies, fs_id])
    con.execute("DETACH src")
    con.close()
    return file_mb(str(out)) - empty_catalog_mb(work)


def written_copies(db: str, fs_id: str, minutes: float, copies: int, work: Path) -> None:
    """The cascade's rows written as featurize writes them, a transaction per copy of the clips, with a CHECKPOINT
    every 50 copies: the file per video-minute as it grows past a row group."""
    out = work / "grown.duckdb"
    out.unlink(missing_ok=True)
    Catalog(str(out)).ensure()
    con = duckdb.connect(str(out))
    con.execute(f"ATTACH '{db}' AS src (READ_ONLY)")
    print(f"\nthe cascade's rows written copy by copy (a transaction each), the file after a CHECKPOINT:")
    for k in range(copies):
        con.execute("BEGIN")
        for table in SCALED_TABLES:
            con.execute(f"INSERT INTO {table} BY NAME SELECT * REPLACE (clip_id || '-{k}' AS clip_id) FROM src.{table}"
                        " WHERE feature_set_id = ?", [fs_id])
        con.execute("COMMIT")
        if (k + 1) % 50 == 0 or k + 1 == copies:
            con.execute("CHECKPOINT")
            used, free = con.execute("SELECT used_blocks, free_blocks FROM pragma_database_size() WHERE database_name ="
                                     " current_database()").fetchone()
            print(f"  {k + 1:4d} copies, {(k + 1) * minutes / 60:6.1f} h of video: {os.path.getsize(out) / 1e6 / ((k + 1) * minutes):.3f}"
                  f" MB per video-minute ({used} blocks in use, {free} free)", flush=True)
    con.close()


def measure(args, work: Path, dense: bool) -> dict:
    ns = argparse.Namespace(**{**vars(args), "dense": dense,
                                "coarse_cells": ObjectsSpec.coarse_stack[0] * ObjectsSpec.coarse_stack[1]})
    work.mkdir(parents=True, exist_ok=True)
    db, fs_id, *_ = rc.build_catalog(ns, work)
    with duckdb.connect(db, read_only=True) as con:
        minutes = con.execute("SELECT sum(c.duration_s) / 60 FROM clips c JOIN clip_features f ON f.clip_id = c.id"
                              " AND f.feature_set_id = ? AND f.status = 'ok'", [fs_id]).fetchone()[0]
        sets = con.execute("SELECT count(*) FROM feature_sets").fetchone()[0]
        # the share of frames whose stacks keep every cell, on crashes and on normal driving
        packed = dict(con.execute(
            "SELECT coalesce(l.class, 'background') = 'background', avg((len(m.flow_q) > ?)::INT) FROM"
            " motion_features m LEFT JOIN labels l ON l.clip_id = m.clip_id WHERE m.feature_set_id = ? AND m.flow_q"
            " IS NOT NULL GROUP BY 1", [4 * ns.coarse_cells, fs_id]).fetchall())
    per_table = {t: table_mb(db, t, fs_id if t in ("motion_features", "objects", "frame_features", "clip_features")
                             else None) for t in TABLES}
    if args.written_copies and not dense:
        written_copies(db, fs_id, minutes, args.written_copies, work)
    return {"minutes": minutes, "file": file_mb(db), "tables": per_table, "sets": sets, "dense_share": packed,
            "fleet": fleet_scale_mb(db, fs_id, args.copies, work) / (args.copies * minutes)}


def empty_catalog_mb(work: Path) -> float:
    """A catalog with its schema and no rows: what every file costs before its first clip (a block per table)."""
    db = work / "empty.duckdb"
    db.unlink(missing_ok=True)
    Catalog(str(db)).ensure()
    return file_mb(str(db))


def main() -> int:
    ap = rc.catalog_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "catalog_bytes"))
    ap.add_argument("--copies", type=int, default=20, help="copies of the clips' rows for the fleet-scale figure")
    ap.add_argument("--written-copies", type=int, default=0,
                    help="also write the cascade's rows this many times over, a transaction per copy (300: 30 hours "
                         "of video, about 3 minutes), printing the file's size as it grows")
    args = rc.parse_catalog_args(ap)
    runs = {"dense": measure(args, Path(args.work) / "dense", True),
            f"cascade {args.object_base_fps:g} fps": measure(args, Path(args.work) / "cascade", False)}
    print(f"\nan empty catalog (schema only) is {empty_catalog_mb(Path(args.work)):.2f} MB after a CHECKPOINT")
    print(f"\n{'catalog':16s} {'video min':>9s} {'file MB':>8s} {'MB/video-min':>12s} {'at scale':>9s}"
          f" {'fleet-year TB':>13s} {'every cell: crashes / normal':>29s}")
    for name, r in runs.items():
        share = "all, full precision" if not r["dense_share"] else \
            f"{100 * r['dense_share'].get(False, 0):.0f}% / {100 * r['dense_share'].get(True, 0):.0f}% of frames"
        print(f"{name:16s} {r['minutes']:9.2f} {r['file']:8.2f} {r['file'] / r['minutes']:12.3f} {r['fleet']:9.3f}"
              f" {r['fleet'] * FLEET_YEAR_MIN / 1e6:13.1f} {share:>29s}")
    print(f"(file: this small catalog after a CHECKPOINT; at scale: {args.copies} copies of its rows in one catalog, "
          "beyond an empty one, per video-minute)")
    print("\neach table alone in a new file, MB per video-minute:")
    for name, r in runs.items():
        print(f"  {name:16s} " + ", ".join(f"{t} {mb / r['minutes']:.3f}" for t, mb in r["tables"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
