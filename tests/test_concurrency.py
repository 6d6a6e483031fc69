"""SQL while flows run: readers and a writer at the same time, and neither side fails.

nearmiss's own readers open the live catalog and retry while a write
transaction holds it; the stock DuckDB CLI, which cannot wait, reads the
snapshot every finished run publishes. A CLI session that holds the live file
makes a flow's next write wait, not fail.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from catalog import Catalog
from catalog.snapshot import publish_snapshot, snapshot_path
from nearmiss.cli import main

DUCKDB_CLI = shutil.which("duckdb", path=str(Path(sys.executable).parent)) or shutil.which("duckdb")
NEARMISS = str(Path(sys.executable).with_name("nearmiss"))


def cli(db, sql):
    return subprocess.run([DUCKDB_CLI, "-readonly", "-csv", "-noheader", str(db), "-c", sql],
                          capture_output=True, text=True, timeout=60)


def test_readers_and_a_writer_at_the_same_time(clips, db, capsys):
    assert DUCKDB_CLI, "the stock DuckDB CLI (duckdb-cli) is a test dependency"
    Catalog(db).ensure()
    publish_snapshot(Catalog(db))
    env = {**os.environ, "CI": "1"}
    writer = subprocess.Popen(
        ["bash", "-c", f"'{NEARMISS}' --db '{db}' ingest '{clips}' --labels '{clips}/labels.csv' && "
                       f"'{NEARMISS}' --db '{db}' featurize --untrained --fps 2 --device cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ours, theirs, failures = [], [], []
    while writer.poll() is None:
        if main(["--db", db, "query", "SELECT count(*) FROM frame_features", "--format", "csv"]) != 0:
            failures.append("nearmiss query: " + capsys.readouterr().err)
        else:
            ours.append(int(capsys.readouterr().out.splitlines()[1]))
        r = cli(snapshot_path(db), "SELECT count(*) FROM clips")
        (theirs.append(int(r.stdout.strip())) if r.returncode == 0 else failures.append("duckdb CLI: " + r.stderr))
        time.sleep(0.1)
    out = writer.stdout.read()
    assert writer.returncode == 0, out
    assert not failures, failures
    assert len(ours) >= 5 and ours == sorted(ours) and ours[-1] > 0   # saw the writer's progress, never a torn state
    assert len(theirs) >= 5
    final = cli(snapshot_path(db), "SELECT count(*) FROM clip_features WHERE status = 'ok'")
    assert final.returncode == 0 and final.stdout.strip() == "8"   # the finished run published its snapshot


def test_a_cli_session_on_the_live_file_makes_the_writer_wait(clips, db):
    Catalog(db).ensure()
    holder = subprocess.Popen([DUCKDB_CLI, "-readonly", db, "-c", "SELECT count(*), sleep_ms(3000) FROM clips"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    t0 = time.monotonic()
    assert main(["--db", db, "ingest", str(clips)]) == 0
    out, err = holder.communicate(timeout=30)
    assert holder.returncode == 0, err
    assert time.monotonic() - t0 > 1.0   # it waited for the reader rather than failing
    with Catalog(db).read() as con:
        assert con.execute("SELECT count(*) FROM clips WHERE status = 'ok'").fetchone()[0] == 8
