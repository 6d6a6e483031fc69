"""A query that would run for minutes is stopped at its time budget or on Ctrl-C, at once, and a writer
waiting for the catalog gets in right after."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalog import Catalog
from catalog.readonly import QueryStopped, run_query
from nearmiss.cli import main

ENDLESS = ("SELECT count(*) FROM range(100000) a, range(100000) b, range(1000) c "
           "WHERE a.range + b.range + c.range = -1")
NEARMISS = str(Path(sys.executable).with_name("nearmiss"))


@pytest.fixture
def catalog(db):
    Catalog(db).ensure()
    return db


def test_a_query_past_its_budget_is_stopped_and_says_why(catalog, capsys):
    t0 = time.perf_counter()
    with pytest.raises(QueryStopped, match="after 1s"):
        run_query(Catalog(catalog), ENDLESS, timeout_s=1)
    assert time.perf_counter() - t0 < 15
    assert main(["--db", catalog, "query", ENDLESS, "--timeout-s", "1"]) == 2
    assert "query stopped after 1s" in capsys.readouterr().err
    assert run_query(Catalog(catalog), "SELECT 42").rows == [(42,)]     # the catalog is free again


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_ctrl_c_stops_a_running_query_and_a_waiting_writer_gets_in(catalog, tmp_path):
    env = {**os.environ, "NEARMISS_QUERY_TIMEOUT_S": "600"}
    query = subprocess.Popen([NEARMISS, "--db", catalog, "query", ENDLESS], stderr=subprocess.PIPE, text=True,
                             env=env)
    time.sleep(6)                                         # well into the query (start-up included)
    t0 = time.perf_counter()
    query.send_signal(signal.SIGINT)
    rc = query.wait(timeout=60)
    stopped_in = time.perf_counter() - t0
    err = query.stderr.read()
    assert rc in (2, 130) and "Traceback" not in err and stopped_in < 15
    with Catalog(catalog).write() as con:                 # a writer is not kept waiting
        con.execute("SELECT 1")


def test_ctrl_c_while_starting_up_is_one_line(catalog):
    query = subprocess.Popen([NEARMISS, "--db", catalog, "query", "SELECT 1"], stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)                                       # still importing
    query.send_signal(signal.SIGINT)
    rc = query.wait(timeout=60)
    err = query.stderr.read()
    # A query now answers in about 0.3 s, so the signal can also land while the interpreter is shutting down,
    # after Python has put SIGINT back to its default: the process then ends by the signal, silently (rc -2).
    # Measured flaky at 1 in 4-6 runs on this commit and on 53fe965 alike; what matters is no traceback.
    assert "Traceback" not in err and rc in (130, 0, -signal.SIGINT)
