"""Every head trained on a labelled, featurized catalog and evaluated on its held-out test split.

Prints a markdown table (the numbers the heads issue asks for). Build the catalog first, e.g.:

    nearmiss synth qbar/clips --n 500 --seed 90210 --width 480 --height 270 --fps 15 \
        --min-duration 5 --max-duration 6
    nearmiss --db qbar/qbar.duckdb ingest qbar/clips --labels qbar/clips/labels.csv
    nearmiss --db qbar/qbar.duckdb featurize --untrained
    python bench/quality_bar.py --db qbar/qbar.duckdb
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steps.train import TrainConfig, run_evaluate, run_train  # noqa: E402
from models.evaluation import summary_line  # noqa: E402
from models.train_spec import TrainSpec  # noqa: E402

ORDER = ("recognition", "detection", "motion3d", "fusion", "zeroshot")


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--heads", nargs="*", default=list(ORDER))
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write every measure here")
    args = ap.parse_args()
    rows, full = [], {}
    for head in args.heads:
        t0 = time.perf_counter()
        report = run_train(args.db, TrainConfig(head, spec=TrainSpec(epochs=args.epochs, seed=args.seed)), log=None)
        train_s = time.perf_counter() - t0
        row, metrics = run_evaluate(args.db, report.model.ref)
        full[row.ref] = metrics
        line = summary_line(metrics)
        rows.append((row.ref, metrics["clips"], line, train_s, report.best_epoch))
        print(f"{row.ref}: trained in {train_s:.0f}s (kept epoch {report.best_epoch}); "
              f"test acc {_f(line['recognition_acc'])}, event F1@0.5 {_f(line['event_f1@0.5'])}", flush=True)
    cols = ("recognition_acc", "detection_acc", "event_f1@0.5", "ap@0.3", "ap@0.5", "peak_mae_s", "video_ap",
            "mtta_s", "tta_r80_s")
    print("\n| head | test clips | " + " | ".join(cols) + " | train s |")
    print("|" + "---|" * (len(cols) + 3))
    for ref, n, line, train_s, _ in rows:
        print(f"| {ref} | {n} | " + " | ".join(_f(line[c]) for c in cols) + f" | {train_s:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(full, indent=1))


if __name__ == "__main__":
    main()
