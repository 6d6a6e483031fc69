"""`nearmiss demo`: the main job end to end on embedded defaults.

Synthesize a small labelled set, ingest it into the DuckDB catalog through
the Prefect flow (Prefect's ephemeral server), and show what the catalog holds.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from catalog import Catalog
from catalog.readonly import run_query
from flows.ingest import ingest_flow
from nearmiss.formatting import format_rows
from pipeline.synth.dataset import LABELS_FILE, make_dataset
from pipeline.synth.scenario import SynthConfig

EXAMPLE_QUERIES = (
    "SELECT status, count(*) AS clips, round(sum(duration_s)/60, 2) AS minutes FROM clips GROUP BY status",
    "SELECT l.class, count(*) AS clips, round(avg(l.event_end_s - l.event_start_s), 2) AS avg_event_s"
    " FROM labels l GROUP BY l.class ORDER BY l.class",
    "SELECT flow, status, started_at, counts FROM runs ORDER BY started_at DESC LIMIT 5",
)


def _show(catalog: Catalog, sql: str) -> None:
    r = run_query(catalog, sql)
    print(f"\n$ nearmiss query \"{sql}\"")
    print(format_rows(r.columns, r.rows), end="")


def _nearmiss_command() -> str:
    """How this shell reaches the CLI: bare if it is on PATH, else the venv's script."""
    script = Path(sys.executable).parent / "nearmiss"
    if shutil.which("nearmiss") == str(script):
        return "nearmiss"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def run_demo(db: str, out: str, n: int = 12, seed: int = 2026) -> int:
    clips_dir = Path(out) / "clips"
    cfg = SynthConfig(min_duration_s=5.0, max_duration_s=8.0)
    print(f"[1/3] synthesizing {n} labelled clips into {clips_dir} (seed {seed})")
    make_dataset(clips_dir, n, seed, cfg)
    print(f"[2/3] ingesting through the Prefect flow into {db}")
    result = ingest_flow([str(clips_dir)], db=db, labels=str(clips_dir / LABELS_FILE))
    print(f"      {result['files']} files: {result['new']} new, {result['unchanged'] + result['duplicate']} already known,"
          f" {result['failed']} failed; {result['labels']} labels")
    print("[3/3] the catalog")
    catalog = Catalog(db)
    for sql in EXAMPLE_QUERIES:
        _show(catalog, sql)
    print(f"\ncatalog: {Path(db).resolve()}")
    print("query it yourself, e.g.:")
    exe = _nearmiss_command()
    for sql in EXAMPLE_QUERIES:
        print(f"  {exe} --db {db} query \"{sql}\"")
    return 0
