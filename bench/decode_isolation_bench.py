"""What decoding in child processes costs: featurize with decode children (the default) and with
--decode-in-process, alternated, on the same synthetic clips.

    python bench/decode_isolation_bench.py [--n 16] [--rounds 2]

Each run is its own process (ingest, then a timed `run_featurize` with random RN50 weights on the CPU),
so neither side inherits the other's warm caches.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def featurize_once(clips: str, db: str, in_process: bool) -> dict:
    from pipeline.featurize_config import FeaturizeConfig
    from steps.featurize import run_featurize
    from steps.ingest import run_ingest
    from pipeline.embed import ClipSpec

    run_ingest([clips], db=db)
    t0 = time.perf_counter()
    s = run_featurize(db, FeaturizeConfig(clip=ClipSpec(untrained=True), device="cpu", decode_in_process=in_process))
    return {"decode": "in process" if in_process else "children", "done": s.done, "frames": s.frames,
            "featurize_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="synthetic clips (320x180, 6-8 s)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)   # clips db in_process: a child run
    a = ap.parse_args()
    if a.one:
        print(json.dumps(featurize_once(a.one[0], a.one[1], a.one[2] == "1")))
        return
    from pipeline.synth.dataset import make_dataset

    work = Path(tempfile.mkdtemp(prefix="decode_isolation_bench_"))
    make_dataset(work / "clips", a.n, seed=3, jobs=2)
    for k in range(a.rounds):
        for in_process in ("0", "1"):
            out = subprocess.run([sys.executable, __file__, "--one", str(work / "clips"),
                                  str(work / f"c{k}{in_process}.duckdb"), in_process],
                                 capture_output=True, text=True, cwd=ROOT)
            print(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else out.stderr[-800:], flush=True)


if __name__ == "__main__":
    main()
