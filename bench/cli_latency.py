"""How long the CLI takes to answer, beside plain DuckDB in the same run (median of 5 whole processes).

    .venv/bin/python bench/cli_latency.py [--runs 5]

Builds a small catalog (16 synthetic clips, labelled, ingested and featurized once, the detection head trained for 2 epochs), then
times each command as a new process: `query` of a 2-row SELECT, `check`, a `score` and a `featurize`
with nothing left to do, and `--help`; and, as the floor, the same SELECT through the `duckdb` Python
package in a fresh interpreter. Targets (issue 19): query <= 0.5 s; a no-op score or featurize <= 2 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NEARMISS = [sys.executable, "-m", "nearmiss.cli"]
SQL = "SELECT status, count(*) FROM clips GROUP BY 1 ORDER BY 1"


def _time(cmd: list[str], env: dict, runs: int, ok: tuple[int, ...] = (0,)) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-800:]}")
    return statistics.median(times), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cli_latency_"))
    db = str(work / "catalog.duckdb")
    env = {**os.environ, "CI": "1", "NEARMISS_DB": db}
    env.pop("PREFECT_API_URL", None)
    print(f"catalog: {db}")
    subprocess.run([*NEARMISS, "synth", str(work / "clips"), "--n", "16", "--width", "320", "--height", "180",
                    "--min-duration", "2", "--max-duration", "3"], cwd=ROOT, env=env, check=True, capture_output=True)
    featurize = [*NEARMISS, "featurize", "--untrained", "--fps", "2", "--device", "cpu", "--quiet"]
    for cmd in ([*NEARMISS, "ingest", str(work / "clips"), "--labels", str(work / "clips" / "labels.csv"), "--quiet"],
                featurize,
                [*NEARMISS, "train", "--head", "detection", "--epochs", "2"]):
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([*NEARMISS, "score", "--quiet"], cwd=ROOT, env=env, check=True, capture_output=True)

    cases = [
        ("plain duckdb (python -c), same SELECT", [sys.executable, "-c",
         f"import duckdb; print(duckdb.connect({db!r}, read_only=True).execute({SQL!r}).fetchall())"]),
        ("nearmiss query (2 rows)", [*NEARMISS, "query", SQL]),
        ("nearmiss --help", [*NEARMISS, "--help"]),
        ("nearmiss check", [*NEARMISS, "check"]),
        ("nearmiss score, nothing to do", [*NEARMISS, "score", "--quiet"]),
        ("nearmiss score --head detection, nothing to do", [*NEARMISS, "score", "--head", "detection", "--quiet"]),
        ("nearmiss score --head nosuchhead (rc 2)", [*NEARMISS, "score", "--head", "nosuchhead"]),
        ("nearmiss featurize, nothing to do", featurize),
    ]
    # A machine with a Prefect server configured (a worker's): the commands that are not flows never import
    # Prefect. The address is never contacted, so none need answer there.
    served = {**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    cases += [(f"{name}, PREFECT_API_URL set", cmd, served) for name, cmd in cases
              if name.startswith(("nearmiss query", "nearmiss check", "nearmiss --help"))]
    print(f"\n{'command':55s} {'median s':>9s}   runs (s)")
    for name, cmd, *where in cases:
        median, times = _time(cmd, where[0] if where else env, args.runs, ok=(0, 2) if "rc 2" in name else (0,))
        print(f"{name:55s} {median:9.2f}   {', '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    main()
