"""Re-scoring speed from stored features: clips per second for a catalog of N clips.

Builds a catalog whose feature rows are copies of a real featurized catalog's
rows (--source) under new clip ids, or, without a source, random rows of the
real shapes (RN50: 1024-d CLIP, 32x7x7 EmbCLIP, 8x12 motion grids, 4x18x32
flow stacks). Trains a head on a labelled subset, then times `score` (first
pass) and `rescore` over every clip, with the time split into reading,
inference and writing.

    python bench/rescore_bench.py --n 10000 --source /path/featurized.duckdb [--head conflict] [--workers 1,0]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog import Catalog  # noqa: E402
from catalog.features import float_lists, register_feature_set  # noqa: E402
from catalog.head_inputs import load_sequences  # noqa: E402
from steps.score import run_rescore, run_score  # noqa: E402
from steps.train import TrainConfig, run_train  # noqa: E402
from models.train_spec import TrainSpec  # noqa: E402
from pipeline.labels import CLASSES  # noqa: E402

FS = "bench0000000000"


def build_random(db: str, n: int, frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cat = Catalog(db)
    with cat.write() as con:
        register_feature_set(con, FS, "bench/random", {"bench": True}, 1024, 1568, True)
    for start in range(0, n, 500):
        ids = [f"bench{i:07d}" for i in range(start, min(n, start + 500))]
        k = len(ids) * frames
        cid = np.repeat(ids, frames)
        base = {"clip_id": pa.array(cid), "feature_set_id": pa.array([FS] * k),
                "frame_idx": pa.array(np.tile(np.arange(frames, dtype=np.int32), len(ids))),
                "t_s": pa.array(np.tile(np.arange(frames) / 4.0, len(ids)))}
        emb = rng.normal(size=(k, 1024)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        frames_t = pa.table({**base, "clip_embedding": float_lists(emb),
                             "embclip": float_lists(rng.normal(size=(k, 1568)).astype(np.float32))})
        g = lambda: float_lists(np.abs(rng.normal(size=(k, 96))).astype(np.float32))  # noqa: E731
        moves = pa.table({**base, **{c: pa.array(rng.normal(size=k).astype(np.float32)) for c in
                                     ("ego_speed", "ego_yaw", "ego_pitch", "residual_rms", "looming")},
                          "fg_energy": g(), "fg_area": g(), "fg_expansion": g(),
                          "flow_stack": float_lists(rng.normal(size=(k, 2304)).astype(np.float32))})
        with cat.write() as con:
            con.register("_f", frames_t)
            con.register("_m", moves)
            con.execute("INSERT INTO frame_features BY NAME SELECT * FROM _f")
            con.execute("INSERT INTO motion_features BY NAME SELECT * FROM _m")
            con.executemany("INSERT INTO clips (id, path, duration_s, status) VALUES (?, ?, ?, 'ok')",
                            [[i, f"/bench/{i}.mp4", frames / 4.0] for i in ids])
            con.executemany("INSERT INTO clip_features (clip_id, feature_set_id, status, n_frames)"
                            " VALUES (?, ?, 'ok', ?)", [[i, FS, frames] for i in ids])
            if start < 400:  # a labelled subset to train the head on
                con.executemany("INSERT INTO labels (clip_id, class, source) VALUES (?, ?, 'bench')",
                                [[i, CLASSES[j % 4]] for j, i in enumerate(ids)])


def build_from_source(db: str, source: str, n: int) -> str:
    """Copies of the source's feature rows (and labels) under new ids until there are n clips."""
    cat = Catalog(db)
    with cat.write() as con:
        con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        fs_id = con.execute("SELECT feature_set_id FROM src.clip_features WHERE status = 'ok'"
                            " GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
        base = con.execute("SELECT count(*) FROM src.clip_features WHERE status = 'ok' AND feature_set_id = ?",
                           [fs_id]).fetchone()[0]
        copies = -(-n // base)
        con.execute("INSERT INTO feature_sets SELECT * FROM src.feature_sets WHERE id = ?", [fs_id])
        con.execute("CREATE TEMP TABLE pick AS SELECT clip_id AS src_id, r, clip_id || ':' || r AS id"
                    " FROM src.clip_features, range(?) t(r) WHERE status = 'ok' AND feature_set_id = ?"
                    " QUALIFY row_number() OVER (ORDER BY r, clip_id) <= ?", [copies, fs_id, n])
        con.execute("INSERT INTO clips (id, path, duration_s, fps, status) SELECT p.id, c.path || '#' || p.r,"
                    " c.duration_s, c.fps, 'ok' FROM pick p JOIN src.clips c ON c.id = p.src_id")
        con.execute("INSERT INTO clip_features (clip_id, feature_set_id, status, n_frames, object_frames) SELECT"
                    " p.id, ?, 'ok', f.n_frames, f.object_frames FROM pick p JOIN src.clip_features f ON"
                    " f.clip_id = p.src_id AND"
                    " f.feature_set_id = ?", [fs_id, fs_id])
        con.execute("INSERT INTO labels (clip_id, class, event_start_s, event_end_s, event_peak_s, source)"
                    " SELECT p.id, l.class, l.event_start_s, l.event_end_s, l.event_peak_s, 'bench' FROM pick p"
                    " JOIN src.labels l ON l.clip_id = p.src_id WHERE p.r = 0")
    for table in ("frame_features", "motion_features", "objects"):   # objects: the road users (conflict, ttc)
        with cat.write() as con:
            con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
            con.execute("CREATE TEMP TABLE pick AS SELECT clip_id AS src_id, clip_id || ':' || r AS id"
                        " FROM src.clip_features, range(?) t(r) WHERE status = 'ok' AND feature_set_id = ?"
                        " QUALIFY row_number() OVER (ORDER BY r, clip_id) <= ?", [copies, fs_id, n])
            # Stored clip by clip, as featurize writes them (one transaction per clip).
            con.execute(f"INSERT INTO {table} SELECT x.* REPLACE (p.id AS clip_id) FROM pick p"
                        f" JOIN src.{table} x ON x.clip_id = p.src_id AND x.feature_set_id = ?"
                        " ORDER BY p.id, x.frame_idx", [fs_id])
    return fs_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--frames", type=int, default=22, help="frames per clip (random rows only)")
    ap.add_argument("--source", default=None, help="featurized catalog whose rows are copied")
    ap.add_argument("--head", default="recognition")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--workers", default="1,0", help="NEARMISS_SCORE_WORKERS values to rescore with, in turn (0: a "
                    "process per core)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="nearmiss-rescore-"))
    work.mkdir(parents=True, exist_ok=True)
    db = str(work / "bench.duckdb")
    t0 = time.perf_counter()
    if not Path(db).exists():
        if args.source:
            build_from_source(db, args.source, args.n)
        else:
            build_random(db, args.n, args.frames)
    print(f"catalog: {db} ({Path(db).stat().st_size / 1e9:.2f} GB), built in {time.perf_counter() - t0:.1f}s")
    cat = Catalog(db)
    with cat.read() as con:
        fs_id = con.execute("SELECT id FROM feature_sets LIMIT 1").fetchone()[0]
        n = con.execute("SELECT count(*) FROM clip_features WHERE status = 'ok'").fetchone()[0]
        frames = con.execute("SELECT count(*) FROM frame_features").fetchone()[0]
        ids = [r[0] for r in con.execute("SELECT clip_id FROM clip_features ORDER BY clip_id LIMIT 2048").fetchall()]
    print(f"{n} clips, {frames} frames ({frames / n:.1f} per clip), feature set {fs_id}")
    t = time.perf_counter()
    with cat.read() as con:
        seqs = load_sequences(con, fs_id, ids, with_flow=args.head in ("motion3d", "fusion"))
    read_s = time.perf_counter() - t
    print(f"read: {len(ids) / read_s:.0f} clips/s ({len(ids)} clips in {read_s:.2f}s)")

    report = run_train(db, TrainConfig(args.head, fs_id, TrainSpec(epochs=3), str(work / "store")), log=None)
    print(f"trained {report.model.ref} on {report.splits}")
    from models.store import default_store, load_head
    head = load_head(report.model.weights_path, store=default_store(db))
    t = time.perf_counter()
    preds = head.predict(seqs)
    infer_s = time.perf_counter() - t
    print(f"inference alone: {len(preds) / infer_s:.0f} clips/s")
    def rescore_with(workers: str):
        os.environ["NEARMISS_SCORE_WORKERS"] = workers
        return run_rescore(db, report.model.ref)

    runs = [("score", lambda: run_score(db, [report.model.ref])[0])]
    for w in args.workers.split(","):   # side by side: the conflict head's cues in 1 process, and spread
        runs.append((f"rescore, NEARMISS_SCORE_WORKERS={w}", lambda w=w: rescore_with(w)))
    for what, fn in runs:
        t = time.perf_counter()
        r = fn()
        wall = time.perf_counter() - t
        print(f"{what}: {r.clips} clips in {wall:.2f}s = {r.clips / wall:.0f} clips/s, {r.incidents} incidents")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
