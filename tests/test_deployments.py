"""prefect.yaml against a real Prefect server: deploy --all, a process worker, a pipeline run to completion."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from catalog import Catalog

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Processes:
    """Background processes in their own sessions, killed with their children on exit."""

    def __init__(self, env, logs: Path):
        self.env, self.logs, self.procs = env, logs, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        p = subprocess.Popen([PREFECT, *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def run(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run([PREFECT, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    def stop(self) -> None:
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_deploy_all_and_a_worker_runs_the_pipeline(clips, tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_WORKER_PREFETCH_SECONDS": "2", "PREFECT_CLI_PROMPT": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "NEARMISS_MODEL_STORE": str(tmp_path / "store")}
    env.pop("PREFECT_API_KEY", None)
    procs = Processes(env, tmp_path)
    db = str(tmp_path / "catalog.duckdb")
    try:
        procs.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))

        def healthy():
            try:
                return urllib.request.urlopen(f"{api}/health", timeout=2).status == 200
            except OSError:
                return False
        _wait(healthy, 120, "the Prefect server")
        procs.run("work-pool", "create", "nearmiss-process", "--type", "process")
        out = procs.run("--no-prompt", "deploy", "--all")
        for name in ("pipeline-nightly", "ingest-nightly", "featurize-nightly", "score-nightly"):
            assert name in out
        procs.start("worker", "worker", "start", "--pool", "nearmiss-process", "--type", "process")
        params = {"paths": [str(clips)], "db": db, "labels": str(clips / "labels.csv"),
                  "featurize": {"untrained": True, "fps": 2.0, "device": "cpu"},
                  "ingest": {"settle_s": 0}}   # the clips were written a moment ago
        out = procs.run("deployment", "run", "pipeline/pipeline-nightly", "--params", json.dumps(params))
        assert "pipeline-nightly" in out

        from prefect.client.orchestration import SyncPrefectClient
        import httpx  # noqa: F401  (the sync client's transport)

        def finished():
            with SyncPrefectClient(api) as client:
                runs = client.read_flow_runs()
                done = [r for r in runs if r.state and r.state.is_final()]
                return done[0] if done else None
        run = _wait(finished, 300, "the pipeline flow run to finish", interval=2)
        assert run.state.is_completed(), f"flow run ended {run.state.name}: {run.state.message}\n" + \
            (tmp_path / "worker.log").read_text()[-4000:]
    finally:
        procs.stop()
    with Catalog(db).read() as con:
        assert con.execute("SELECT count(*) FROM clips WHERE status = 'ok'").fetchone()[0] == 8
        assert con.execute("SELECT count(*) FROM clip_features WHERE status = 'ok'").fetchone()[0] == 8
        assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == 8
        (status, prefect_id), = con.execute(
            "SELECT status, prefect_flow_run_id FROM runs WHERE flow = 'pipeline'").fetchall()
    assert status == "completed" and prefect_id == str(run.id)
    # Everything was cleaned up: no server or worker left behind.
    assert all(p.poll() is not None for p in procs.procs)


@pytest.fixture(autouse=True)
def _no_harness_env(monkeypatch):
    """This test talks to its own server; never to a harness's."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
