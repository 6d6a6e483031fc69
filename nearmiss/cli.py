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

EXAMPLES = {
    "synth": "nearmiss synth clips/ --n 24",
    "ingest": "nearmiss ingest ~/clips --labels ~/clips/labels.csv",
    "featurize": "nearmiss featurize --stages motion,objects --detector darknet:~/models/yolo_fastest",
    "search": "nearmiss search 'a cyclist crossing' --k 5",
    "train": "nearmiss train --head recognition",
    "evaluate": "nearmiss evaluate --head recognition@2 --format json",
    "score": "nearmiss score --head conflict",
    "rescore": "nearmiss rescore --head conflict --where \"c.path LIKE '%night%'\"",
    "report": "nearmiss report --out report/",
    "review": "nearmiss review --limit 20",
    "snapshot": "nearmiss snapshot",
    "check": "nearmiss check",
    "query": "nearmiss query \"SELECT model_name, count(*) FROM latest_incidents GROUP BY 1\"",
    "demo": "nearmiss demo --n 40",
}


class _Help(argparse.RawDescriptionHelpFormatter):
    """Each flag's default after its help (when it has one worth saying), and the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or "default" in text or default is None or default is False \
                or default == argparse.SUPPRESS \
                or action.option_strings == [] or isinstance(action, argparse._HelpAction):
            return text
        return f"{text} (default: %(default)s)"


def _common(with_prefect: bool = False) -> argparse.ArgumentParser:
    """The flags every command takes, after its name too (`nearmiss ingest --db x.duckdb ...`)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db", default=argparse.SUPPRESS, help="catalog file (default: $NEARMISS_DB or ./nearmiss.duckdb)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bar, notes or Prefect logs below WARNING; errors still say what went wrong")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="more detail: every training epoch, Prefect's DEBUG logs")
    if with_prefect:
        p.add_argument("--prefect", action="store_true", default=argparse.SUPPRESS,
                       help="run as a Prefect flow (a temporary Prefect server when PREFECT_API_URL is not set; "
                            "with it set, runs are always recorded there)")
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("nearmiss")
    except PackageNotFoundError:   # run from a checkout that was not installed
        return "unknown"


def _command_in(argv: list[str]) -> str | None:
    """The command argv names (the first word that is not a global flag or its value)."""
    words = iter(argv)
    for word in words:
        if word == "--db":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the flags of the command argv names (all commands' with argv None). Only that
    command's are built: some come from option models and the head modules' declarations, which take
    time to import, and `nearmiss query` answers in about half a second."""
    only = (_command_in(argv) or "") if argv is not None else None   # "": no command named, none built
    parser = argparse.ArgumentParser(prog="nearmiss", description=__doc__, formatter_class=_Help,
                                     epilog="examples:\n  " + "\n  ".join(EXAMPLES[c] for c in
                                                                          ("ingest", "featurize", "score", "report")))
    parser.add_argument("--db", default=None, help="catalog file (default: $NEARMISS_DB or ./nearmiss.duckdb)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an expected error")
    parser.add_argument("--version", action="version", version=f"nearmiss {_version()}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, notes or Prefect logs below "
                        "WARNING")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail: every training epoch, Prefect's "
                        "DEBUG logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)

    if only in (None, "train", "evaluate", "score", "rescore"):   # read from the head modules' source: 0.1 s
        from models.head_registry import declared_heads
        head_names = " | ".join(declared_heads())
    else:
        head_names = ""

    def command(name: str, help: str, prefect: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[_common(prefect)], formatter_class=_Help,
                           epilog=f"example:\n  {EXAMPLES[name]}")
        p.set_defaults(runs_as_flow=prefect)
        return p if only in (None, name) else _Unbuilt()

    p = command("synth", "render labelled synthetic dashcam clips")
    p.add_argument("out_dir")
    p.add_argument("--n", type=int, default=8, help="number of clips (classes dealt in balance)")
    p.add_argument("--seed", type=int, default=0, help="seeds the scenes")
    p.add_argument("--width", type=int, default=640, help="frame width in pixels")
    p.add_argument("--height", type=int, default=360, help="frame height in pixels")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second")
    p.add_argument("--min-duration", type=float, default=5.0, help="shortest clip, seconds")
    p.add_argument("--max-duration", type=float, default=15.0, help="longest clip, seconds")
    p.add_argument("--jobs", type=int, default=None, help="parallel renderers (default: all cores)")

    p = command("ingest", "add video files, folders or globs to the catalog", prefect=True)
    p.add_argument("paths", nargs="+")
    p.add_argument("--labels", help="labels CSV: path (or file), class, event_start_s, event_end_s")
    p.add_options("IngestOptions")

    p = command("featurize", "motion, CLIP/EmbCLIP and (with --detector) road-user features for clips that lack "
                "them", prefect=True)
    p.add_options("FeaturizeOptions")

    p = command("search", "find frames by text with the feature set's CLIP model")
    p.add_argument("text")
    p.add_argument("--k", type=int, default=10, help="frames returned")
    p.add_argument("--feature-set", default=None, help="feature set id (default: the newest)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    p.add_argument("--allow-untrained", action="store_true", help="search random CLIP embeddings anyway: every "
                   "row then says the similarity means nothing")

    p = command("train", "train a near-miss head on the catalog's labels and register a version")
    p.add_argument("--head", required=True, help=f"{head_names} (heads that need no training only register their "
                   "configuration)")
    p.add_argument("--feature-set", default=None, help="feature set id (default: the newest)")
    p.add_options("TrainOptions")
    p.add_argument("--store", default=None, help="model store folder (default: $NEARMISS_MODEL_STORE or "
                   "model_store/ beside the catalog)")
    p.add_argument("--pretrained", default=None, help="zeroshot: CLIP checkpoint file, when the feature set used one")
    p.add_argument("--allow-untrained", action="store_true", help="zeroshot on random CLIP weights anyway (tests, "
                   "benchmarks): every prediction says its scores mean nothing")

    p = command("evaluate", "every evaluation measure of a head on the test split")
    p.add_argument("--head", required=True, help=f"NAME or NAME@VERSION (default version: the newest); NAME: {head_names}")
    p.add_argument("--split", choices=["test", "val", "train"], default="test", help="which split's clips")
    p.add_argument("--format", choices=["table", "json"], default="table", help="output format")

    p = command("score", "run heads over every clip with features and no prediction from them", prefect=True)
    p.add_argument("--head", action="append", default=None,
                   help=f"NAME[@VERSION], repeatable (default: the newest version of every trained head); NAME: {head_names}")
    p.add_argument("--where", default=None, help="SQL predicate on clips, e.g. \"duration_s > 10\"")

    p = command("rescore", "re-score clips with a head version from stored features (no decoding)")
    p.add_argument("--head", required=True, help=f"NAME or NAME@VERSION (default version: the newest); NAME: {head_names}")
    p.add_argument("--where", default=None, help="SQL predicate on clips (alias c), e.g. \"c.path LIKE '%%night%%'\"")

    p = command("report", "static HTML page of the top incidents and the evaluation")
    p.add_argument("--out", default="report", help="folder to write index.html and its images into")
    p.add_argument("--where", default=None, help="SQL predicate on clips (alias c) or incidents (alias i)")
    p.add_argument("--head", default=None, help="head whose incidents to show (default: conflict, then ttc, when they "
                   "have incidents; else the one with most)")
    p.add_argument("--limit", type=int, default=20, help="incidents shown")

    p = command("review", "review incidents in a local web page; verdicts become labels")
    p.add_argument("--out", default="review", help="folder for the page's frame strips and plots")
    p.add_argument("--head", default=None, help="head whose incidents to review (default: as the report)")
    p.add_argument("--limit", type=int, default=50, help="incidents on the page")
    p.add_argument("--reviewer", default="", help="name stored with each verdict (default: the login name)")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1")

    p = command("snapshot", "publish NAME.snapshot.duckdb for the stock DuckDB CLI (flows do it too)")
    p.add_argument("--full", action="store_true", help="include the per-frame feature tables (large)")

    command("check", "read the whole catalog and verify every block's checksum")

    p = command("query", "run read-only SQL against the catalog")
    p.add_argument("sql")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    p.add_argument("--max-rows", type=int, default=200, help="table format only")
    p.add_argument("--timeout-s", type=float, default=None, help="stop the query after this many seconds "
                   "(default: NEARMISS_QUERY_TIMEOUT_S, 60); Ctrl-C stops it at once")

    p = command("demo", "the main job end to end on embedded defaults, through Prefect's flows")
    p.add_argument("--out", default="demo_out", help="folder for the clips, the model store and the report")
    p.add_argument("--n", type=int, default=72, help="synthetic clips (classes dealt in balance; 72 keeps the demo under 5 minutes on 2 cores)")
    p.add_argument("--seed", type=int, default=2026, help="seeds the clips and the training")
    p.add_argument("--pretrained", default=None, help="CLIP RN50 checkpoint file; without it random weights")
    return parser


class _Unbuilt:
    """A command parser left bare: another command was named, so its flags are not built."""
    def add_argument(self, *a, **k) -> None:
        pass

    def add_options(self, model: str) -> None:
        pass


class _CommandParser(argparse.ArgumentParser):
    def add_options(self, model: str) -> None:
        """One flag per field of an options model of steps/options.py (generated from the specs)."""
        import steps.options
        from contracts.options import add_arguments
        add_arguments(self, getattr(steps.options, model))


def _options(args, model: str):
    import steps.options
    from contracts.options import from_arguments
    return from_arguments(args, getattr(steps.options, model))


def _use_prefect(args) -> bool:
    """Run as Prefect flows: when asked, or when a Prefect server is configured (so runs are recorded there); only
    the commands that are flows (`query`, `check`, `report` never import Prefect, server or not)."""
    return getattr(args, "runs_as_flow", False) and bool(getattr(args, "prefect", False)
                                                         or os.environ.get("PREFECT_API_URL"))


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
    from steps.ingest import IngestSummary, run_ingest

    options = _options(args, "IngestOptions")
    if _use_prefect(args):
        from flows.ingest import ingest_flow
        state = ingest_flow(args.paths, db=_db(args), labels=args.labels, options=options, progress=_progress(args))
        failures = [tuple(f) for f in state.pop("failures")]
        summary = IngestSummary(run_id=state.pop("run_id"), failures=failures, **state)
    else:
        summary = run_ingest(args.paths, db=_db(args), labels=args.labels, cfg=options.config(),
                             show_progress=_progress(args))
    return _print_ingest(summary)


def cmd_featurize(args) -> int:
    options = _options(args, "FeaturizeOptions")
    if _use_prefect(args):
        from flows.featurize import featurize_flow
        counts = featurize_flow(_db(args), options, progress=_progress(args))
        failures = counts.pop("failures")
    else:
        from steps.featurize import run_featurize
        s = run_featurize(_db(args), options.config(), show_progress=_progress(args), spread=options.spread(),
                          chunk=options.chunk_clips, log=None if getattr(args, "quiet", False) else _note)
        counts, failures = s.counts(), s.failures
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
    from pipeline.featurize_models import clip_spec_of_feature_set
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
    from models.evaluation import summary_line
    from steps.train import TrainConfig, run_train

    cfg = TrainConfig(args.head, args.feature_set, _options(args, "TrainOptions").spec(), args.store,
                      args.pretrained, args.allow_untrained)
    report = run_train(_db(args), cfg, log=print if getattr(args, "verbose", False) else None)
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
    from steps.train import run_evaluate
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
    from steps.score import HeadScore, run_score

    if _use_prefect(args):
        from flows.score import score_flow
        results = [HeadScore(d["model"], d["clips"], d["incidents"], d["seconds"], warning=d.get("warning"))
                   for d in score_flow(_db(args), args.head, args.where, progress=_progress(args))]
    else:
        results = run_score(_db(args), args.head, args.where, show_progress=_progress(args))
    for r in results:
        _print_score(r)
    return 0


def cmd_rescore(args) -> int:
    from nearmiss.formatting import format_rows

    from steps.score import run_rescore
    r = run_rescore(_db(args), args.head, args.where, show_progress=_progress(args))
    _print_score(r)
    rows = [(c, r.before.get(c, 0), r.after.get(c, 0), r.after.get(c, 0) - r.before.get(c, 0)) for c in r.after]
    sys.stdout.write(format_rows(["class", "before", "after", "change"], rows, "table"))
    if r.moved:
        print("moved: " + ", ".join(f"{k} {v}" for k, v in r.moved.items()))
    else:
        print("no clip changed class")
    return 0


def _known_head(args) -> None:
    """--head names a head nearmiss has (one line listing them otherwise), checked before anything is read."""
    if getattr(args, "head", None):
        from models.head_registry import parse_head_ref
        parse_head_ref(args.head)


def cmd_report(args) -> int:
    from nearmiss.report import build_report

    _known_head(args)
    page = build_report(_db(args), args.out, args.where, args.head, args.limit)
    print(f"report: {page.resolve()}")
    return 0


def cmd_review(args) -> int:
    from nearmiss.review import ReviewConfig, serve

    _known_head(args)
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


def _progress(args) -> bool:
    return not getattr(args, "quiet", False)


def _note(text: str) -> None:
    print(text, file=sys.stderr)


TEMPORARY_SERVER_START_S = 120


def _temporary_server_failed(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and "ephemeral Prefect API server" in str(exc)


def _prefect_defaults(args) -> None:
    """Prefect's state beside the project (not ~/.prefect), no telemetry from offline machines, and its log
    level from --quiet / --verbose (read when Prefect is first imported, so set before)."""
    os.environ.setdefault("PREFECT_HOME", str(Path(__file__).resolve().parents[1] / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY", "false")
    # Prefect's 20 s for its temporary server to answer is too short on 2 loaded cores (3 starts of 6 failed).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(TEMPORARY_SERVER_START_S))
    if getattr(args, "quiet", False):
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    elif getattr(args, "verbose", False):
        os.environ["PREFECT_LOGGING_LEVEL"] = "DEBUG"


def main(argv: list[str] | None = None) -> int:
    if signal.getsignal(signal.SIGINT) is _quiet_interrupt:
        signal.signal(signal.SIGINT, signal.default_int_handler)   # from here, Ctrl-C is a KeyboardInterrupt
    try:
        return _main(argv)
    except KeyboardInterrupt:   # also while starting up (imports), before any work
        print("interrupted; finished work is kept, re-run to complete", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    _prefect_defaults(args)
    import duckdb
    from catalog import CatalogDamaged, CatalogLocked, CatalogMissing, NotACatalog, SchemaTooNew
    from catalog.connection import damaged, is_damage
    from catalog.readonly import WriteRefused
    from contracts.errors import EXPECTED

    expected = (WriteRefused, SchemaTooNew, NotACatalog, CatalogMissing, CatalogLocked, CatalogDamaged,
                *EXPECTED, ValueError)

    def fail(message: str) -> int:
        if args.debug:
            raise
        # Prefect's flow state keeps the exception; its frames would keep DuckDB objects alive until
        # interpreter teardown, where nanobind reports them as leaked.
        sys.exc_info()[1].__traceback__ = None
        print(f"nearmiss {args.command}: {message}", file=sys.stderr)
        return 2

    try:
        if _use_prefect(args) or args.command == "demo":
            from flows.ephemeral import tie_temporary_server_to_this_process
            tie_temporary_server_to_this_process()
            if not args.debug:
                _quiet_prefect_tracebacks(expected)
            with _logs_above_the_progress_bar():
                return COMMANDS[args.command](args)
        return COMMANDS[args.command](args)
    except expected as exc:
        return fail(str(exc))
    except RuntimeError as exc:
        if not _temporary_server_failed(exc):
            raise
        wait = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", TEMPORARY_SERVER_START_S)
        return fail(f"Prefect's temporary server did not answer within {wait} s (a loaded machine?); nothing was "
                    "run. Run without --prefect, raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a "
                    "server once (`prefect server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api")
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


def _logs_above_the_progress_bar():
    """Prefect's console log lines printed through tqdm, so a line never lands in the middle of the bar."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    import prefect  # noqa: F401  (configures its loggers, whose console handlers are redirected)
    names = ("prefect", "prefect.flow_runs", "prefect.task_runs")
    return logging_redirect_tqdm([logging.getLogger(n) for n in names])


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
