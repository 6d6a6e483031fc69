"""Featurize spread over Dask workers: the same clips in one process, on 1 worker and on 2 workers.

    python bench/scale_bench.py [--clips DIR] [--n 24] [--workers 1 2] [--threads] [--device cpu|cuda|auto]

Every configuration runs the `featurize` Prefect flow from the same freshly ingested catalog, in its
own process (so each pays its own model loading, as a real run does). For each it prints clips per
second, and for the spread ones where the time went: starting the cluster (worker processes import
torch and load CLIP), the workers' featurize time summed over tasks, shard writing, the merge, and
the rest of the wall clock outside the workers (Prefect, scheduling, waiting). The driver featurizes
the first clips itself, to fit the EmbCLIP projection as one process would ("driver_s").
Without --clips it renders synthetic 320x180 clips; CLIP weights are random (--untrained): the same
compute as a checkpoint, which cannot be downloaded here. With a GPU, add `--device cuda` for the
GPU side; compare it with `--device cpu` in the same run via --devices cpu cuda.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_one(db: str, workers: int, threads: bool, device: str, chunk: int) -> dict:
    from flows.featurize import featurize_flow
    from pipeline.featurize_options import FeaturizeOptions

    options = FeaturizeOptions(untrained=True, device=device, workers=workers, worker_threads=threads,
                               chunk_clips=chunk)
    t0 = time.perf_counter()
    out = featurize_flow(db, options)
    return {"wall_s": time.perf_counter() - t0, **{k: out[k] for k in ("done", "failed", "frames", "cluster")}}


def _synth(out: Path, n: int) -> Path:
    from pipeline.synth.dataset import make_dataset
    from pipeline.synth.scenario import SynthConfig
    make_dataset(out, n, seed=5, cfg=SynthConfig(width=320, height=180, min_duration_s=6, max_duration_s=8), jobs=2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, help="folder of clips (default: render synthetic ones)")
    ap.add_argument("--n", type=int, default=24, help="synthetic clips to render")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    ap.add_argument("--threads", action="store_true", help="workers as threads of one process")
    ap.add_argument("--devices", nargs="+", default=["auto"], help="e.g. cpu cuda, on a GPU machine")
    ap.add_argument("--chunk-clips", type=int, default=4)
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)   # db workers threads device: a child run
    a = ap.parse_args()
    if a.one:
        db, workers, threads, device = a.one
        print(json.dumps(run_one(db, int(workers), threads == "1", device, a.chunk_clips)))
        return
    from steps.ingest import run_ingest

    work = Path(tempfile.mkdtemp(prefix="scale_bench_"))
    clips = a.clips or _synth(work / "clips", a.n)
    base = str(work / "base.duckdb")
    run_ingest([str(clips)], db=base)
    rows = []
    for device in a.devices:
        for workers in [0, *a.workers]:
            db = str(work / f"{device}-{workers}.duckdb")
            shutil.copy(base, db)
            cmd = [sys.executable, __file__, "--one", db, str(workers), "1" if a.threads else "0", device,
                   "--chunk-clips", str(a.chunk_clips)]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                sys.exit(out.stderr[-3000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            c = r["cluster"]
            row = {"device": device, "workers": workers or "none (in process)", "clips": r["done"],
                   "failed": r["failed"], "wall_s": round(r["wall_s"], 1),
                   "clips_per_s": round(r["done"] / r["wall_s"], 3)}
            if c:
                outside = r["wall_s"] - c["driver_s"] - c["worker_s"] / max(workers, 1)
                row.update(driver_clips=c["driver_clips"], driver_s=c["driver_s"], shards=c["shards"],
                           first_task_waited_s=c["start_s"], worker_featurize_s=c["worker_s"],
                           shard_write_s=c["shard_write_s"], merge_s=c["merge_s"],
                           outside_workers_s=round(outside, 1))
            rows.append(row)
            print(json.dumps(row), flush=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
