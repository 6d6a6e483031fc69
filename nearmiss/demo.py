"""`nearmiss demo`: the whole job end to end on embedded defaults (a DuckDB file, Prefect's ephemeral server).

1. synthesize a small labelled set of dashcam clips;
2. run the pipeline flow (ingest, featurize, score) through Prefect;
3. train the heads on the catalog's labels (fixed train/val/test split);
4. score every clip with them (the score flow);
5. print the top incidents and the evaluation table (held-out test split);
6. write the HTML report;
and say where everything is, with SQL a user can paste.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from catalog import Catalog
from catalog.readonly import run_query
from flows.end_to_end import pipeline_flow
from flows.score import score_flow
from steps.train import TrainConfig, run_evaluate, run_train
from models.evaluation import summary_line
from models.head_registry import meaningless_untrained
from models.heads import get_head, list_heads
from models.train_spec import TrainSpec
from nearmiss.formatting import format_rows
from nearmiss.report import build_report
from pipeline.featurize_options import FeaturizeOptions
from pipeline.synth.dataset import LABELS_FILE, make_dataset
from pipeline.synth.scenario import SynthConfig

# The synthetic clips are featurized without a detector: every registered head that needs no road users.
HEADS = tuple(h for h in list_heads() if "objects" not in get_head(h).needs)

EXAMPLE_QUERIES = (
    "SELECT path, class, round(start_s, 2) AS start_s, round(peak_s, 2) AS peak_s, round(score, 3) AS score"
    " FROM latest_incidents WHERE model_name = 'detection' ORDER BY score DESC LIMIT 5",
    "SELECT model_name, predicted_class, count(*) AS clips FROM latest_predictions GROUP BY ALL ORDER BY ALL",
    "SELECT flow, status, started_at, counts FROM runs ORDER BY started_at DESC LIMIT 5",
)


def _show(catalog: Catalog, sql: str) -> None:
    r = run_query(catalog, sql)
    print(format_rows(r.columns, r.rows), end="")


def _nearmiss_command() -> str:
    """How the user's shell reaches the CLI from any folder: bare when their venv is active, else the venv's
    script by its absolute path (the demo's script runs in the checkout, not where the user typed it)."""
    script = Path(sys.executable).parent / "nearmiss"
    if os.environ.get("VIRTUAL_ENV") and Path(os.environ["VIRTUAL_ENV"]).resolve() == script.parent.parent.resolve():
        return "nearmiss"
    return str(script.absolute())


def demo_heads(untrained: bool) -> list[str]:
    """The heads the demo trains and shows: those the synthetic clips can feed (no road users), less those whose
    scores would mean nothing on random CLIP weights."""
    return [h for h in HEADS if not (untrained and meaningless_untrained(h))]


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def run_demo(db: str, out: str, n: int = 72, seed: int = 2026, pretrained: str | None = None) -> int:
    t0 = time.perf_counter()
    out_dir = Path(out)
    clips_dir = out_dir / "clips"
    store = out_dir / "model_store"
    cfg = SynthConfig(width=480, height=270, fps=15.0, min_duration_s=4.0, max_duration_s=5.0)
    print(f"[1/6] synthesizing {n} labelled clips into {clips_dir} (seed {seed})")
    make_dataset(clips_dir, n, seed, cfg)

    untrained = pretrained is None
    heads = demo_heads(untrained)
    if untrained:
        print("      no CLIP checkpoint given (this machine cannot download one): the demo uses random CLIP "
              "weights (--untrained); pass --pretrained /path/to/RN50.pt for real ones")
        print("      with random CLIP weights, the heads that read CLIP embeddings learn from random image features "
              "and the motion; " + ", ".join(sorted(set(HEADS) - set(heads))) + " (prompts against the "
              "embeddings, nothing learnt) would mean nothing, so it is left out")
    print(f"[2/6] pipeline flow (ingest, featurize, score) through Prefect into {db}")
    s = pipeline_flow([str(clips_dir)], db=db, labels=str(clips_dir / LABELS_FILE),
                      featurize=FeaturizeOptions(pretrained=pretrained, untrained=untrained))
    print(f"      {s['files']} files: {s['new']} new, {s['skipped']} already known, {s['failed']} failed; "
          f"{s['featurized']} clips featurized")

    print("[3/6] training the heads on the labelled clips (train/val split; test held out)")
    for head in heads:
        report = run_train(db, TrainConfig(head, spec=TrainSpec(epochs=60), store=str(store),
                                           pretrained=pretrained, allow_untrained=untrained), log=None)
        random_clip = untrained and "embeddings" in get_head(head).needs
        print(f"      {report.model.ref:15s} {report.model.kind:9s} {report.splits['train']} train / "
              f"{report.splits['val']} val clips" + (" (on random CLIP features)" if random_clip else ""))

    print("[4/6] scoring every clip with the newest heads (score flow)")
    for r in score_flow(db=db):
        print(f"      {r['model']:15s} {r['clips']} clips, {r['incidents']} incidents")

    catalog = Catalog(db)
    print("[5/6] top incidents (detection head) and the evaluation on the held-out test split\n")
    _show(catalog, EXAMPLE_QUERIES[0])
    cols = ("recognition_acc", "detection_acc", "event_f1@0.5", "ap@0.5", "video_ap", "mtta_s")
    rows = []
    for head in heads:
        row, metrics = run_evaluate(db, head)
        line = summary_line(metrics)
        rows.append((row.ref, metrics["clips"], *(_num(line[c]) for c in cols)))
    print()
    print(format_rows(["head", "test clips", *cols], rows), end="")
    print(f"      ({n} clips is a demo, not a benchmark: on 800 clips, bench/quality_bar.py measures recognition "
          "0.94 and event F1@0.5 0.96 on the test split)")

    page = build_report(db, str(out_dir / "report"))
    print(f"[6/6] report: {page.resolve()}")
    print(f"\ncatalog: {Path(db).resolve()} (done in {time.perf_counter() - t0:.0f}s)")
    print("query it yourself, from any folder, e.g.:")
    exe = _nearmiss_command()
    for sql in EXAMPLE_QUERIES:
        print(f"  {exe} --db {Path(db).resolve()} query \"{sql}\"")
    return 0
