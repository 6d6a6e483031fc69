"""prefect.yaml against a real Prefect server: deploy --all, a process worker, a pipeline run to completion."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timezone
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


def _serve_with_pool(procs: "Processes", port: int, api: str) -> None:
    """`prefect server start` on the port, answering, with the process work pool the deployments use."""
    procs.start("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))

    def healthy():
        try:
            return urllib.request.urlopen(f"{api}/health", timeout=2).status == 200
        except OSError:
            return False
    _wait(healthy, 120, "the Prefect server")
    procs.run("work-pool", "create", "nearmiss-process", "--type", "process")


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
        _serve_with_pool(procs, port, api)
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


def _server_env(tmp_path: Path, port: int) -> dict:
    """A real Prefect server's settings as README's operations section gives them: no telemetry, and (for
    the test's sake) a scheduler that looks every 5 s instead of every 60 s."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2", "PREFECT_CLI_PROMPT": "false",
           "PREFECT_LOGGING_LEVEL": "INFO", "NEARMISS_MODEL_STORE": str(tmp_path / "store")}
    env.pop("PREFECT_API_KEY", None)
    return env


@pytest.fixture(scope="module")
def scheduling_server(tmp_path_factory):
    """`prefect server start` (not the temporary one) with the work pool made: what an operator runs."""
    tmp = tmp_path_factory.mktemp("scheduling")
    port = _free_port()
    env = _server_env(tmp, port)
    procs = Processes(env, tmp)
    api = env["PREFECT_API_URL"]
    try:
        _serve_with_pool(procs, port, api)
        yield procs, api, tmp
    finally:
        procs.stop()


def _flow_runs(api: str, deployment_id=None):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with SyncPrefectClient(api) as client:
        flt = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])) if deployment_id else None
        return client.read_flow_runs(deployment_filter=flt)


def _deployment_ids(api: str) -> dict[str, object]:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api) as client:
        return {d.name: d.id for d in client.read_deployments()}


def test_the_cron_schedules_in_prefect_yaml_create_runs(scheduling_server):
    """The nightly deployments fire by themselves: the server's scheduler creates their runs. On SQLAlchemy 2.1
    it failed every cycle ("Can't evaluate bulk DML statement") and none was ever created."""
    procs, api, tmp = scheduling_server
    out = procs.run("--no-prompt", "deploy", "--all")
    ids = {name: i for name, i in _deployment_ids(api).items() if name.endswith("-nightly")}
    assert set(ids) == {"pipeline-nightly", "ingest-nightly", "featurize-nightly", "score-nightly"}, out

    def scheduled():
        runs = {name: [r for r in _flow_runs(api, i) if r.state and r.state.is_scheduled() and r.auto_scheduled]
                for name, i in ids.items()}
        return runs if all(runs.values()) else None
    runs = _wait(scheduled, 90, "the scheduler to create runs for every cron deployment", interval=2)
    for name, rs in runs.items():   # the cron's hour, UTC: pipeline 01:00, ingest 02:00, featurize 03:00, score 05:00
        hour = {"pipeline-nightly": 1, "ingest-nightly": 2, "featurize-nightly": 3, "score-nightly": 5}[name]
        assert all(r.expected_start_time.astimezone(timezone.utc).hour == hour for r in rs), name
    server_log = (tmp / "server.log").read_text()
    assert "bulk DML" not in server_log and "Unexpected error" not in server_log, server_log[-3000:]
    assert "telemetry" not in server_log.lower(), server_log[-3000:]


def test_an_interval_schedule_runs_to_completion_on_a_process_worker(scheduling_server, clips):
    """A deployment on a schedule, deployed with --prefect-file from the checkout, is run by a process worker
    to COMPLETED without anyone triggering it; the catalog's runs row carries the flow run's id."""
    procs, api, tmp = scheduling_server
    db = str(tmp / "scheduled.duckdb")
    spec = {"name": "nearmiss-scheduled-test", "prefect-version": "3.8.8",
            "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}],
            "deployments": [{"name": "ingest-every-10s", "entrypoint": "flows/ingest.py:ingest_flow",
                             "parameters": {"paths": [str(clips)], "db": db, "options": {"settle_s": 0}},
                             "work_pool": {"name": "nearmiss-process"},
                             "schedules": [{"interval": 10}]}]}
    yaml_file = tmp / "elsewhere" / "prefect.yaml"
    yaml_file.parent.mkdir()
    yaml_file.write_text(json.dumps(spec))   # JSON is YAML
    procs.run("--no-prompt", "deploy", "--all", "--prefect-file", str(yaml_file))
    deployment = _deployment_ids(api)["ingest-every-10s"]
    procs.start("worker", "worker", "start", "--pool", "nearmiss-process", "--type", "process")

    def completed():
        done = [r for r in _flow_runs(api, deployment) if r.auto_scheduled and r.state and r.state.is_completed()]
        return done or None
    done = _wait(completed, 240, "a scheduled run to complete on the worker", interval=2)
    failed = [r for r in _flow_runs(api, deployment) if r.state and r.state.is_final() and not r.state.is_completed()]
    assert not failed, [(r.name, r.state.message) for r in failed]
    with Catalog(db).read() as con:
        tagged = {r[0] for r in con.execute(
            "SELECT prefect_flow_run_id FROM runs WHERE flow = 'ingest' AND status = 'completed'").fetchall()}
        assert con.execute("SELECT count(*) FROM clips WHERE status = 'ok'").fetchone()[0] == 8
    assert {str(r.id) for r in done} <= tagged
    assert "telemetry" not in (tmp / "worker.log").read_text().lower()


@pytest.fixture(autouse=True)
def _no_harness_env(monkeypatch):
    """This test talks to its own server; never to a harness's."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
