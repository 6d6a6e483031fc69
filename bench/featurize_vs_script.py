"""nearmiss featurize against a plain script doing the same work (bench/plain_featurize.py), same real clips.

Contenders, each a fresh process timed from start to exit (imports and model loading included for all):
nearmiss with the torch engine (what featurize ran before the engines), nearmiss with the default engine
(the fastest installed here), the plain script; and with --no-clip, nearmiss's motion + objects path (no
CLIP). Runs alternate (the order rotates each round) so that the machine's state is shared; the median of
--rounds is reported as video-seconds per wall-second. A first, untimed round warms the caches (exported
engines, the page cache).

    .venv/bin/python bench/featurize_vs_script.py [--clips 6] [--rounds 3]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
PY = sys.executable
NEARMISS = str(Path(PY).with_name("nearmiss"))
YOLO = SHARED / "models" / "yolo_fastest"

from bench.featurize_profile import CLIPS  # noqa: E402


def nearmiss(engine: str, stages: str | None = None):
    def cmd(db: str, paths: list[str]) -> list[str]:
        return [NEARMISS, "--db", db, "featurize", "--untrained", "--device", "cpu", "--engine", engine,
                "--detector", f"darknet:{YOLO}"] + (["--stages", stages] if stages else [])
    return cmd


def script(db: str, paths: list[str]) -> list[str]:
    return [PY, str(ROOT / "bench" / "plain_featurize.py"), db, *paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-clip", action="store_true", help="also time nearmiss's motion + objects path")
    args = ap.parse_args()
    paths = [str(SHARED / "data" / "real_dashcam" / c) for c in CLIPS[:args.clips]]
    if not all(Path(p).exists() for p in paths) or not YOLO.exists():
        sys.exit("needs ../shared/data/real_dashcam and ../shared/models/yolo_fastest")
    work = Path(tempfile.mkdtemp(prefix="nm-vs-script-"))
    template = work / "ingested.duckdb"
    subprocess.run([NEARMISS, "--db", str(template), "ingest", *paths], check=True,
                   capture_output=True, env={**__import__("os").environ, "CI": "1"})
    from catalog import Catalog
    with Catalog(str(template)).read() as con:
        video_s = con.execute("SELECT sum(duration_s) FROM clips WHERE status = 'ok'").fetchall()[0][0]
    contenders = {"nearmiss, engine torch": nearmiss("torch"), "nearmiss, engine auto": nearmiss("auto"),
                  "plain script": script}
    if args.no_clip:
        contenders["nearmiss motion+objects, auto"] = nearmiss("auto", "motion,objects")
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(args.rounds + 1):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            db = work / f"{round_}-{names.index(name)}.duckdb"
            if contenders[name] is not script:
                shutil.copy(template, db)
            t0 = time.perf_counter()
            r = subprocess.run(contenders[name](str(db), paths), capture_output=True, text=True,
                               env={**__import__("os").environ, "CI": "1"})
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"{name} failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
            if round_:  # round 0 warms the caches
                times[name].append(wall)
                print(f"round {round_}: {name}: {wall:.1f} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{len(paths)} real clips, {video_s:.1f} s of video, 2 CPU cores; median of {args.rounds} alternating "
          "runs, whole processes\n")
    print("| contender | runs (s) | median (s) | video-s per wall-s |")
    print("|---|---|---|---|")
    for name in names:
        med = statistics.median(times[name])
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in times[name])} | {med:.1f} | {video_s / med:.2f} |")
    base, fast = (statistics.median(times[n]) for n in ("nearmiss, engine torch", "nearmiss, engine auto"))
    plain = statistics.median(times["plain script"])
    print(f"\nnearmiss auto vs torch: {base / fast:.2f}x; nearmiss auto vs the plain script: {plain / fast:.2f}x")


if __name__ == "__main__":
    main()
