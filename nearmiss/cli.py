"""`nearmiss`: the one command-line entry point. Every job is a subcommand."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from pathlib import Path


def _quiet_interrupt(signum, frame) -> None:
    """Ctrl-C while the command is still loading its libraries: one line, not an import traceback."""
    print("interrupted while starting; nothing was done", file=sys.stderr)
    os._exit(130)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not when imported by a program of its own
    signal.signal(signal.SIGINT, _quiet_interrupt)

from catalog import default_db_path
from models.calibration import DEFAULT_ALARMS_PER_HOUR
from pipeline.featurize_options import add_arguments as add_featurize_arguments
from pipeline.featurize_options import from_arguments as featurize_options


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=argparse.SUPPRESS,
                   help="catalog file (default: $NEARMISS_DB or ./nearmiss.duckdb)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nearmiss", description=__doc__)
    parser.add_argument("--db", default=None, help="catalog file (default: $NEARMISS_DB or ./nearmiss.duckdb)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an expected error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render labelled synthetic dashcam clips")
    p.add_argument("out_dir")
    p.add_argument("--n", type=int, default=8, help="number of clips (classes dealt in balance)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--min-duration", type=float, default=5.0)
    p.add_argument("--max-duration", type=float, default=15.0)
    p.add_argument("--jobs", type=int, default=None, help="parallel renderers (default: all cores)")

    p = sub.add_parser("ingest", help="add video files, folders or globs to the catalog")
    _add_db(p)
    p.add_argument("paths", nargs="+")
    p.add_argument("--labels", help="labels CSV: path (or file), class, event_start_s, event_end_s")
    p.add_argument("--workers", type=int, default=2, help="files probed at once")
    p.add_argument("--probe-timeout", type=float, default=120.0, help="seconds before a decoder counts as hung")
    p.add_argument("--retry-failed", action="store_true", help="probe again files that failed before")
    p.add_argument("--settle-s", type=float, default=0.0,
                   help="skip files modified less than this many seconds ago (still being copied in); "
                        "a later run takes them")
    p.add_argument("--direct", action="store_true", help="run the same steps without Prefect (no server start)")

    p = sub.add_parser("featurize", help="motion, CLIP/EmbCLIP and (with --detector) road-user features "
                       "for clips that lack them")
    _add_db(p)
    add_featurize_arguments(p)
    p.add_argument("--direct", action="store_true", help="run the same steps without Prefect")

    p = sub.add_parser("search", help="find frames by text with the feature set's CLIP model")
    _add_db(p)
    p.add_argument("text")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--feature-set", default=None, help="feature set id (default: the newest)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--allow-untrained", action="store_true", help="search random CLIP embeddings anyway: every "
                   "row then says the similarity means nothing")

    p = sub.add_parser("train", help="train a near-miss head on the catalog's labels and register a version")
    _add_db(p)
    p.add_argument("--head", required=True, help="recognition | detection | motion3d | zeroshot | fusion | ttc | "
                   "conflict (heads that need no training only register their configuration)")
    p.add_argument("--feature-set", default=None, help="feature set id (default: the newest)")
    p.add_argument("--epochs", type=int, default=80, help="upper bound; early stopping on the val split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alarms-per-hour", type=float, default=DEFAULT_ALARMS_PER_HOUR,
                   help="conflict: the false-alarm budget on the normal-driving clips labelled in the catalog; "
                        f"the alarm level is set from them (default {DEFAULT_ALARMS_PER_HOUR:g})")
    p.add_argument("--store", default=None, help="model store folder (default: $NEARMISS_MODEL_STORE or "
                   "model_store/ beside the catalog)")
    p.add_argument("--pretrained", default=None, help="zeroshot: CLIP checkpoint file, when the feature set used one")
    p.add_argument("--allow-untrained", action="store_true", help="zeroshot on random CLIP weights anyway (tests, "
                   "benchmarks): every prediction says its scores mean nothing")
    p.add_argument("--verbose", action="store_true", help="print every epoch")

    p = sub.add_parser("evaluate", help="every evaluation measure of a head on the test split")
    _add_db(p)
    p.add_argument("--head", required=True, help="NAME or NAME@VERSION (default version: the newest)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("score", help="run heads over every clip with features and no prediction from them")
    _add_db(p)
    p.add_argument("--head", action="append", default=None,
                   help="NAME[@VERSION], repeatable (default: the newest version of every trained head)")
    p.add_argument("--where", default=None, help="SQL predicate on clips, e.g. \"duration_s > 10\"")
    p.add_argument("--direct", action="store_true", help="run the same steps without Prefect")

    p = sub.add_parser("rescore", help="re-score clips with a head version from stored features (no decoding)")
    _add_db(p)
    p.add_argument("--head", required=True, help="NAME or NAME@VERSION (default version: the newest)")
    p.add_argument("--where", default=None, help="SQL predicate on clips (alias c), e.g. \"c.path LIKE '%%night%%'\"")

    p = sub.add_parser("report", help="static HTML page of the top incidents and the evaluation")
    _add_db(p)
    p.add_argument("--out", default="report", help="folder to write index.html and its images into")
    p.add_argument("--where", default=None, help="SQL predicate on clips (alias c) or incidents (alias i)")
    p.add_argument("--head", default=None, help="head whose incidents to show (default: the one with most)")
    p.add_argument("--limit", type=int, default=20, help="incidents shown")

    p = sub.add_parser("review", help="review incidents in a local web page; verdicts become labels")
    _add_db(p)
    p.add_argument("--out", default="review", help="folder for the page's frame strips and plots")
    p.add_argument("--head", default=None, help="head whose incidents to review (default: as the report)")
    p.add_argument("--limit", type=int, default=50, help="incidents on the page")
    p.add_argument("--reviewer", default="", help="name stored with each verdict (default: the login name)")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1")

    p = sub.add_parser("snapshot", help="publish NAME.snapshot.duckdb for the stock DuckDB CLI (flows do it too)")
    _add_db(p)
    p.add_argument("--full", action="store_true", help="include the per-frame feature tables (large)")

    p = sub.add_parser("check", help="read the whole catalog and verify every block's checksum")
    _add_db(p)

    p = sub.add_parser("query", help="run read-only SQL against the catalog")
    _add_db(p)
    p.add_argument("sql")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--max-rows", type=int, default=200, help="table format only")
    p.add_argument("--timeout-s", type=float, default=None, help="stop the query after this many seconds "
                   "(default: NEARMISS_QUERY_TIMEOUT_S, 60); Ctrl-C stops it at once")

    p = sub.add_parser("demo", help="the main job end to end on embedded defaults")
    _add_db(p)
    p.add_argument("--out", default="demo_out", help="folder for the clips, the model store and the report")
    p.add_argument("--n", type=int, default=120, help="synthetic clips (classes dealt in balance)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--pretrained", default=None, help="CLIP RN50 checkpoint file; without it random weights")
    return parser


def _db(args) -> str:
    return getattr(args, "db", None) or default_db_path()


def cmd_synth(args) -> int:
    from pipeline.synth.dataset import LABELS_FILE, make_dataset
    from pipeline.synth.scenario import SynthConfig

    cfg = SynthConfig(width=args.width, height=args.height, fps=args.fps,
                      min_duration_s=args.min_duration, max_duration_s=args.max_duration)
    clips = make_dataset(args.out_dir, args.n, args.seed, cfg, jobs=args.jobs)
    by_class: dict[str, int] = {}
    for c in clips:
        by_class[c.cls] = by_class.get(c.cls, 0) + 1
    print(f"wrote {len(clips)} clips to {args.out_dir} ({', '.join(f'{k} {v}' for k, v in sorted(by_class.items()))})")
    print(f"labels: {Path(args.out_dir) / LABELS_FILE}")
    return 0


def _print_ingest(summary) -> int:
    c = summary.counts()
    print(f"ingest: {c['files']} files -> {c['new']} new, {c['duplicate']} duplicate, "
          f"{c['unchanged']} unchanged, {c['failed']} failed, {c['known_failed']} known-bad"
          + (f", {c['still_writing']} still being written (next run)" if c['still_writing'] else ""))
    for path, error in summary.failures:
        print(f"  failed: {path}: {error}")
    if summary.labels or summary.label_errors:
        print(f"labels: {summary.labels} stored")
    for e in summary.label_errors:
        print(f"  label error: {e}")
    return 1 if summary.label_errors else 0


def cmd_ingest(args) -> int:
    from flows.ingest import IngestConfig, ingest_flow, run_ingest

    cfg = IngestConfig(workers=args.workers, probe_timeout_s=args.probe_timeout, retry_failed=args.retry_failed,
                       settle_s=args.settle_s)
    if args.direct:
        summary = run_ingest(args.paths, db=_db(args), labels=args.labels, cfg=cfg, show_progress=True)
    else:
        state = ingest_flow(args.paths, db=_db(args), labels=args.labels, workers=cfg.workers,
                            probe_timeout_s=cfg.probe_timeout_s, retry_failed=cfg.retry_failed,
                            settle_s=cfg.settle_s, progress=True)
        from flows.ingest import IngestSummary
        failures = [tuple(f) for f in state.pop("failures")]
        run_id = state.pop("run_id")
        summary = IngestSummary(run_id=run_id, failures=failures, **state)
    return _print_ingest(summary)


def cmd_featurize(args) -> int:
    from flows.featurize import featurize_flow, run_featurize

    options = featurize_options(args)
    if args.direct:
        s = run_featurize(_db(args), options.config(), show_progress=True, spread=options.spread(),
                          chunk=options.chunk_clips)
        counts, failures = s.counts(), s.failures
    else:
        counts = featurize_flow(_db(args), options, progress=True)
        failures = counts.pop("failures")
    print(f"featurize: feature set {counts['feature_set_id']}: {counts['done']} clips done, {counts['failed']} failed, "
          f"{counts['frames']} frames in {counts['seconds']:.1f}s")
    if c := counts.get("cluster"):
        print(f"  spread over workers: {c['shards']} shards merged in {c['merge_s']:.1f}s; "
              f"{c['driver_clips']} clips featurized here first to fit the projection")
    for clip_id, error in failures:
        print(f"  failed: {clip_id[:16]}: {error}")
    return 0


def cmd_search(args) -> int:
    from catalog import Catalog
    from catalog.features import feature_set, search_frames
    from nearmiss.formatting import format_rows
    from pipeline.featurize_config import clip_spec_of_feature_set
    from pipeline.embed import embed_text, load_clip, resolve_device

    catalog = Catalog(_db(args))
    with catalog.read() as con:
        found = feature_set(con, args.feature_set)
    if found is None:
        raise ValueError("no feature set in the catalog: run `nearmiss featurize` first")
    fs_id = found.id
    spec = clip_spec_of_feature_set(found)
    if spec.untrained and not args.allow_untrained:
        raise ValueError(f"feature set {fs_id} was featurized with random CLIP weights (--untrained): text search "
                         "over it ranks noise. Featurize with real weights (--pretrained PATH), or pass "
                         "--allow-untrained to see it anyway")
    vector = embed_text(load_clip(spec, resolve_device("auto")), [args.text])[0]
    with catalog.read() as con:
        rows = search_frames(con, fs_id, vector, args.k)
    columns = ["path", "t_s", "similarity", "clip_id"]
    if spec.untrained:   # never silent: every row says it
        columns.append("weights")
        rows = [(*r, "random (untrained): similarity means nothing") for r in rows]
    sys.stdout.write(format_rows(columns, rows, args.format))
    return 0


def cmd_train(args) -> int:
    from flows.train import TrainConfig, run_train
    from models.evaluation import summary_line
    from models.training import TrainSpec

    cfg = TrainConfig(args.head, args.feature_set, TrainSpec(epochs=args.epochs, seed=args.seed,
                                                             alarms_per_hour=args.alarms_per_hour),
                      args.store, args.pretrained, args.allow_untrained)
    report = run_train(_db(args), cfg, log=print if args.verbose else None)
    m = report.model
    print(f"trained {m.ref} ({m.kind}) on feature set {m.feature_set_id}: {report.splits['train']} train / "
          f"{report.splits['val']} val clips")
    if level := m.params.get("alarm_level"):
        lo, hi = level["observed_interval"]
        print(f"  alarm level {level['threshold']:.3f} for {level['alarms_per_hour']:g} false alarms per hour, from "
              f"{level['negatives']} normal-driving clips ({level['minutes']:.1f} min): {level['observed_alarms']} "
              f"windows above it there (95% {lo:.1f}-{hi:.1f} per hour); {level['method']}")
    if report.first_loss is not None:
        print(f"  train loss {report.first_loss:.3f} -> {report.best_loss:.3f}; kept epoch {report.best_epoch}")
    if report.val:
        line = summary_line(report.val)
        print("  val: " + ", ".join(f"{k} {v:.3f}" for k, v in line.items() if isinstance(v, float)))
    from models.store import default_store, resolve_weights
    print(f"  weights {resolve_weights(m.weights_path, default_store(_db(args)))} (sha256 {m.weights_sha256[:12]})")
    return 0


def cmd_evaluate(args) -> int:
    import json
    from flows.train import run_evaluate
    from nearmiss.formatting import format_evaluation

    row, metrics = run_evaluate(_db(args), args.head, args.split)
    if args.format == "json":
        print(json.dumps({"model": row.ref, "split": args.split, **metrics}, indent=1))
    else:
        print(format_evaluation(row.ref, args.split, metrics))
    return 0


def _print_score(r) -> None:
    rate = r.clips / r.seconds if r.seconds else 0.0
    print(f"{r.model}: {r.clips} clips scored, {r.incidents} incidents ({r.seconds:.2f}s, {rate:.0f} clips/s)"
          + (f" -- {r.warning}" if getattr(r, "warning", None) else ""))


def cmd_score(args) -> int:
    from flows.score import HeadScore, run_score, score_flow

    if args.direct:
        results = run_score(_db(args), args.head, args.where, show_progress=True)
    else:
        results = [HeadScore(d["model"], d["clips"], d["incidents"], d["seconds"])
                   for d in score_flow(_db(args), args.head, args.where, progress=True)]
    for r in results:
        _print_score(r)
    return 0


def cmd_rescore(args) -> int:
    from nearmiss.formatting import format_rows

    from flows.score import run_rescore
    r = run_rescore(_db(args), args.head, args.where, show_progress=True)
    _print_score(r)
    rows = [(c, r.before.get(c, 0), r.after.get(c, 0), r.after.get(c, 0) - r.before.get(c, 0)) for c in r.after]
    sys.stdout.write(format_rows(["class", "before", "after", "change"], rows, "table"))
    if r.moved:
        print("moved: " + ", ".join(f"{k} {v}" for k, v in r.moved.items()))
    else:
        print("no clip changed class")
    return 0


def cmd_report(args) -> int:
    from nearmiss.report import build_report

    page = build_report(_db(args), args.out, args.where, args.head, args.limit)
    print(f"report: {page.resolve()}")
    return 0


def cmd_review(args) -> int:
    from nearmiss.review import ReviewConfig, serve

    serve(ReviewConfig(_db(args), args.out, args.head, args.limit, args.reviewer, port=args.port))
    return 0


def cmd_snapshot(args) -> int:
    from catalog import Catalog
    from catalog.snapshot import publish_snapshot

    path = publish_snapshot(Catalog(_db(args)), full=args.full)
    print(f"snapshot: {path}  (open with: duckdb -readonly {path})")
    return 0


def cmd_check(args) -> int:
    from catalog import Catalog
    from catalog.integrity import check_catalog

    r = check_catalog(Catalog(_db(args)))
    print(f"check: {_db(args)} is sound: schema version {r.schema_version}, {r.tables} tables, {r.rows} rows read")
    return 0


def cmd_query(args) -> int:
    from catalog.readonly import run_query
    from nearmiss.formatting import format_rows
    from catalog import Catalog

    result = run_query(Catalog(_db(args)), args.sql, args.timeout_s)
    sys.stdout.write(format_rows(result.columns, result.rows, args.format, args.max_rows))
    return 0


def cmd_demo(args) -> int:
    from nearmiss.demo import run_demo
    return run_demo(db=_db(args), out=args.out, n=args.n, seed=args.seed, pretrained=args.pretrained)


COMMANDS = {"synth": cmd_synth, "ingest": cmd_ingest, "featurize": cmd_featurize, "search": cmd_search,
            "train": cmd_train, "evaluate": cmd_evaluate, "score": cmd_score, "rescore": cmd_rescore,
            "report": cmd_report, "review": cmd_review, "snapshot": cmd_snapshot, "check": cmd_check,
            "query": cmd_query, "demo": cmd_demo}


PREFECT_COMMANDS = {"ingest", "featurize", "score", "demo"}  # these run Prefect flows unless --direct


def _prefect_defaults() -> None:
    """Prefect's state beside the project (not ~/.prefect), and no telemetry from offline machines."""
    os.environ.setdefault("PREFECT_HOME", str(Path(__file__).resolve().parents[1] / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) is _quiet_interrupt:
        signal.signal(signal.SIGINT, signal.default_int_handler)   # from here, Ctrl-C is a KeyboardInterrupt
    try:
        return _main(argv)
    except KeyboardInterrupt:   # also while starting up (imports), before any work
        print("interrupted; finished work is kept, re-run to complete", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    _prefect_defaults()
    import duckdb
    from catalog import CatalogDamaged, CatalogLocked, CatalogMissing, NotACatalog, SchemaTooNew
    from catalog.connection import damaged, is_damage
    from catalog.readonly import WriteRefused
    from models.store import WeightsMismatch, WeightsMissing
    from pipeline.detect import DetectorUnavailable
    from pipeline.embed import WeightsUnavailable
    from pipeline.labels import LabelsError

    expected = (WriteRefused, LabelsError, SchemaTooNew, NotACatalog, CatalogMissing, CatalogLocked, CatalogDamaged,
                WeightsUnavailable, DetectorUnavailable, WeightsMismatch, WeightsMissing, ValueError)

    def fail(message: str) -> int:
        if args.debug:
            raise
        # Prefect's flow state keeps the exception; its frames would keep DuckDB objects alive until
        # interpreter teardown, where nanobind reports them as leaked.
        sys.exc_info()[1].__traceback__ = None
        print(f"nearmiss {args.command}: {message}", file=sys.stderr)
        return 2

    if not args.debug:
        _quiet_prefect_tracebacks(expected)
    try:
        if args.command in PREFECT_COMMANDS and not getattr(args, "direct", False):
            from flows.ephemeral import tie_temporary_server_to_this_process
            tie_temporary_server_to_this_process()
        return COMMANDS[args.command](args)
    except expected as exc:
        return fail(str(exc))
    except duckdb.PermissionException as exc:  # user SQL (--where) that tried to reach a file
        return fail(f"SQL may read the catalog only: {str(exc).splitlines()[0]}")
    except (duckdb.Error, OSError) as exc:
        if isinstance(exc, duckdb.Error) and is_damage(exc):
            return fail(str(damaged(_db(args), exc)))
        if _disk_full(exc):
            return fail("the disk is full (No space left on device). Free some space and re-run: finished work is "
                        "kept and the run completes what is missing")
        raise
    except KeyboardInterrupt:
        print("interrupted; finished work is kept, re-run to complete", file=sys.stderr)
        return 130


def _quiet_prefect_tracebacks(expected: tuple) -> None:
    """Prefect logs a failed flow or task run with its traceback; for an expected error the CLI's own
    line says it all (--debug keeps Prefect's)."""
    def keep(record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, expected) or (exc is not None and _disk_full(exc)))
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(keep)


def _disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False

if __name__ == "__main__":
    sys.exit(main())
