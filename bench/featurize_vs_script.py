"""nearmiss featurize against a plain script doing the same work (bench/plain_featurize.py), same real clips,
and against nearmiss as it was at earlier commits.

Contenders, each a fresh process timed from start to exit (imports and model loading included for all):
nearmiss with each of --engines (default: auto, the fastest installed here), the plain script, and for each
--baseline REF nearmiss as it was at that git commit (exported with `git archive`, run with this venv, its
default engine, in process); with --no-clip also the motion + objects path (no CLIP) of this tree and of each
baseline. Runs alternate (the order rotates each round) so that the machine's state is shared; the median of
--rounds is reported as video-seconds per wall-second, and beside it the seconds featurize itself reports
(without start-up: what a long batch of clips sees per clip). --warm adds a first, untimed round (exported
engines, the page cache).

    .venv/bin/python bench/featurize_vs_script.py [--clips 6] [--rounds 3] [--no-clip] [--baseline 5d5b072]
                                                  [--footage normal --clips 12]
"""
from __future__ import annotations

import argparse
import os
import re
import resource
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
YOLO = SHARED / "models" / "yolo_fastest"
FLEET_DAY_H = 800.0   # 100 vehicles, 8 hours a day: machine-hours = this / (video-s per wall-s)

from bench.featurize_profile import CLIPS  # noqa: E402


def nearmiss_cli(tree: Path, command: str, db: str) -> list[str]:
    """A nearmiss command of the source at `tree`, run in process by this venv's Python."""
    direct = ["--direct"] if '"--direct"' in (tree / "nearmiss" / "cli.py").read_text() else []  # before in-process
    return [PY, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); from nearmiss.cli import main; "
            "sys.argv[0] = 'nearmiss'; sys.exit(main())", str(tree), "--db", db, command, *direct]


def nearmiss(tree: Path, engine: str | None, stages: str | None = None, extra: tuple[str, ...] = ()):
    """featurize of the nearmiss source at `tree` (the catalog ingested by that same source)."""
    def cmd(db: str, paths: list[str]) -> list[str]:
        return (nearmiss_cli(tree, "featurize", db) + ["--untrained", "--device", "cpu", "--detector", f"darknet:{YOLO}"]
                + (["--engine", engine] if engine else []) + (["--stages", stages] if stages else []) + list(extra))
    cmd.tree = tree
    return cmd


def checkout(ref: str, into: Path) -> Path:
    """The source tree at a commit, outside this checkout (its engine exports have their own cache keys)."""
    tree = into / f"src-{ref}"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def children_cpu_s() -> float:
    """User + system CPU seconds of every child process waited for so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def stolen_s() -> float:
    """CPU seconds this VM's CPUs were stolen (ran other guests) since boot, summed over CPUs; 0 off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def script(db: str, paths: list[str]) -> list[str]:
    return [PY, str(ROOT / "bench" / "plain_featurize.py"), db, *paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--footage", choices=("eventful", "normal"), default="eventful",
                    help="eventful: 6 development clips with crashes, a cut-in and city traffic (the default); normal: "
                         "the normal-driving segments, a source at a time (what most of a fleet's video is)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines", default="auto", help="comma list of this tree's engines to time")
    ap.add_argument("--baseline", action="append", default=[], help="git commit to time as well (repeatable)")
    ap.add_argument("--no-clip", action="store_true", help="also time the motion + objects path")
    ap.add_argument("--warm", action="store_true", help="a first, untimed round")
    ap.add_argument("--objects-variant", action="append", default=[], metavar="FLAGS",
                    help="with --no-clip: also the motion + objects path with these featurize flags, e.g. "
                         "'--object-input 416 --object-height 416' (repeatable)")
    ap.add_argument("--objects-only", action="store_true",
                    help="with --no-clip: time only the motion + objects contenders (no CLIP, no plain script)")
    args = ap.parse_args()
    if args.footage == "normal":   # a fleet's day is mostly this: every source's normal driving, in turn
        folder = SHARED / "data" / "real_negatives"
        by_source: dict[str, list[str]] = {}
        for p in sorted(folder.glob("*.mp4")):
            by_source.setdefault(p.name.split("_")[0], []).append(str(p))
        rounds = [ps[k] for k in range(max(map(len, by_source.values()), default=0)) for ps in by_source.values()
                  if k < len(ps)]
        paths = rounds[:args.clips]
    else:
        paths = [str(SHARED / "data" / "real_dashcam" / c) for c in CLIPS[:args.clips]]
    if not all(Path(p).exists() for p in paths) or not YOLO.exists():
        sys.exit("needs ../shared/data/real_dashcam and ../shared/models/yolo_fastest")
    work = Path(tempfile.mkdtemp(prefix="nm-vs-script-"))
    env = {**os.environ, "CI": "1"}
    templates: dict[Path, Path] = {}

    def ingested(tree: Path) -> Path:
        """A catalog with the clips ingested by that tree's nearmiss (its schema may differ from this one's)."""
        if tree not in templates:
            templates[tree] = work / f"ingested-{len(templates)}.duckdb"
            subprocess.run(nearmiss_cli(tree, "ingest", str(templates[tree])) + paths, check=True,
                           capture_output=True, env=env)
        return templates[tree]

    from catalog import Catalog
    with Catalog(str(ingested(ROOT))).read() as con:
        video_s = con.execute("SELECT sum(duration_s) FROM clips WHERE status = 'ok'").fetchall()[0][0]
    contenders = {}
    trees = {ref: checkout(ref, work) for ref in args.baseline}
    if not args.objects_only:
        for ref in args.baseline:
            contenders[f"nearmiss at {ref}"] = nearmiss(trees[ref], None)
        for engine in args.engines.split(","):
            contenders[f"nearmiss, engine {engine}"] = nearmiss(ROOT, engine)
        contenders["plain script"] = script
    if args.no_clip:
        for ref in args.baseline:
            contenders[f"nearmiss at {ref}, motion+objects"] = nearmiss(trees[ref], None, "motion,objects")
        contenders["nearmiss motion+objects, auto"] = nearmiss(ROOT, "auto", "motion,objects")
        for flags in args.objects_variant:
            contenders[f"nearmiss motion+objects, {flags}"] = nearmiss(ROOT, "auto", "motion,objects",
                                                                      tuple(flags.split()))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    inner: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    steal: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(0 if args.warm else 1, args.rounds + 1):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            db = work / f"{round_}-{names.index(name)}.duckdb"
            if contenders[name] is not script:
                shutil.copy(ingested(contenders[name].tree), db)
            t0, cpu0, stolen0 = time.perf_counter(), children_cpu_s(), stolen_s()
            r = subprocess.run(contenders[name](str(db), paths), capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            cpu[name].append(children_cpu_s() - cpu0)
            steal[name].append((stolen_s() - stolen0) / (wall * (os.cpu_count() or 1)))
            if r.returncode != 0:
                sys.exit(f"{name} failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
            if round_:  # round 0 warms the caches
                times[name].append(wall)
                own = re.search(r"frames in ([0-9.]+)s", r.stdout + r.stderr)
                if own:
                    inner[name].append(float(own.group(1)))
                print(f"round {round_}: {name}: {wall:.1f} s, {cpu[name][-1]:.1f} CPU-s, "
                      f"{100 * steal[name][-1]:.0f}% stolen", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{len(paths)} real clips ({args.footage}), {video_s:.1f} s of video, {os.cpu_count()} CPU cores; median of "
          f"{args.rounds} alternating runs, whole processes\n")
    print("| contender | runs (s) | median (s) | video-s per wall-s | featurize's own median (s) | video-s per s | "
          f"fleet-day ({FLEET_DAY_H:g} h of video), machine-hours | CPU-s, median | stolen |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        med = statistics.median(times[name])
        own = statistics.median(inner[name]) if inner[name] else None
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in times[name])} | {med:.1f} | {video_s / med:.2f} | "
              + (f"{own:.1f} | {video_s / own:.2f} |" if own else "| |") + f" {FLEET_DAY_H * med / video_s:.0f} | "
              f"{statistics.median(cpu[name]):.1f} | {100 * statistics.median(steal[name]):.0f}% |")
    print("\nCPU-s: the process's own CPU time (user + system, its decode children's included), which the VM's "
          "stolen time (the hypervisor running other guests: /proc/stat's steal) does not inflate as it does the "
          "wall time")
    print()
    if not args.objects_only:
        now = statistics.median(times[f"nearmiss, engine {args.engines.split(',')[0]}"])
        for name in names:
            if name.startswith("nearmiss at") and "motion" not in name or name == "plain script":
                print(f"nearmiss ({args.engines.split(',')[0]}) vs {name}: {statistics.median(times[name]) / now:.2f}x")
    if args.no_clip:
        fast = statistics.median(times["nearmiss motion+objects, auto"])
        for ref in args.baseline:
            print(f"motion+objects vs at {ref}: {statistics.median(times[f'nearmiss at {ref}, motion+objects']) / fast:.2f}x")
        print(f"motion+objects: {video_s / fast:.2f}x real time")
        for flags in args.objects_variant:
            print(f"motion+objects, {flags}: {statistics.median(times[f'nearmiss motion+objects, {flags}']) / fast:.2f}x "
                  "the time of the default")


if __name__ == "__main__":
    main()
