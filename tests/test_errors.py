"""Expected failures are one clear line (exit 2, no traceback), and none of them damages the catalog."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from catalog import Catalog
from nearmiss.cli import main

ROOT = Path(__file__).resolve().parents[1]
NEARMISS = [sys.executable, "-m", "nearmiss.cli"]


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nearmiss {command}: ") and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_another_applications_duckdb_file_is_refused_untouched(tmp_path, capsys, clips):
    other = tmp_path / "accounts.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE accounts (id INT, owner VARCHAR)")
    con.close()
    before = _digest(other)
    assert main(["--db", str(other), "ingest", str(clips)]) == 2
    assert "another application" in _one_line(capsys, "ingest")
    assert main(["--db", str(other), "check"]) == 2
    assert _digest(other) == before


def _damage(db: str, where: float = 0.1) -> None:
    data = bytearray(Path(db).read_bytes())
    at = int(len(data) * where)
    data[at:at + 8192] = os.urandom(8192)
    Path(db).write_bytes(bytes(data))


def test_a_damaged_catalog_is_named_before_anything_is_written(catalog_copy, capsys):
    assert main(["--db", catalog_copy, "check"]) == 0
    assert "is sound" in capsys.readouterr().out
    _damage(catalog_copy)
    before = _digest(catalog_copy)
    assert main(["--db", catalog_copy, "check"]) == 2
    assert "is damaged" in _one_line(capsys, "check")
    garbage = Path(catalog_copy).with_name("garbage.duckdb")
    garbage.write_bytes(b"not a database" * 100)
    for argv in (["query", "SELECT count(*) FROM clips"], ["score"], ["ingest", str(garbage)]):
        assert main(["--db", str(garbage), *argv]) == 2
        assert "is damaged" in _one_line(capsys, argv[0])
    assert _digest(catalog_copy) == before


def test_a_truncated_catalog_is_one_line_for_every_command(catalog_copy, tmp_path, capsys):
    """Cut short anywhere (a copy interrupted, a full disk): check, query and the writers refuse it in one line,
    even where the blocks a query needs are still there."""
    size = Path(catalog_copy).stat().st_size
    with duckdb.connect(catalog_copy, read_only=True) as con:
        bs, used = con.execute("SELECT block_size, used_blocks FROM pragma_database_size()").fetchone()
    for keep in (4096, size // 10, size // 2, 3 * 4096 + used * bs - 1):   # the last: one byte short
        cut = tmp_path / f"cut_{keep}.duckdb"
        shutil.copy(catalog_copy, cut)
        os.truncate(cut, keep)
        for argv in (["check"], ["query", "SELECT count(*) FROM clips"], ["score"]):
            assert main(["--db", str(cut), *argv]) == 2, (keep, argv)
            assert "is damaged" in _one_line(capsys, argv[0])
        assert cut.stat().st_size == keep


def test_labels_pointed_at_another_file_do_not_echo_it(tmp_path, clips, db, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$s3cr3t-hash:19000:0:99999:7:::\nline two\n")
    assert main(["--db", db, "ingest", str(clips), "--labels", str(secret)]) == 2
    err = _one_line(capsys, "ingest")
    assert "s3cr3t" not in err and "19000" not in err and "not a labels CSV" in err
    binary = tmp_path / "x.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["--db", db, "ingest", str(clips), "--labels", str(binary)]) == 2
    _one_line(capsys, "ingest")


def test_a_moved_catalog_still_scores(catalog_copy, tmp_path, monkeypatch, capsys):
    """Weights are recorded relative to the model store, which lives beside the catalog."""
    monkeypatch.delenv("NEARMISS_MODEL_STORE")
    here = Path(catalog_copy).parent
    monkeypatch.chdir(here)
    assert main(["--db", "catalog.duckdb", "train", "--head", "zeroshot", "--allow-untrained"]) == 0
    moved = tmp_path / "elsewhere" / "deep"
    moved.parent.mkdir()
    shutil.move(str(here / "catalog.duckdb"), str(tmp_path / "elsewhere" / "catalog.duckdb"))
    shutil.move(str(here / "model_store"), str(tmp_path / "elsewhere" / "model_store"))
    moved.mkdir()
    monkeypatch.chdir(moved)                       # a different working directory too
    assert main(["--db", "../catalog.duckdb", "score"]) == 0
    assert "zeroshot@1: 24 clips scored" in capsys.readouterr().out
    # NEARMISS_MODEL_STORE points elsewhere: honoured.
    shutil.move(str(tmp_path / "elsewhere" / "model_store"), str(tmp_path / "store2"))
    monkeypatch.setenv("NEARMISS_MODEL_STORE", str(tmp_path / "store2"))
    assert main(["--db", "../catalog.duckdb", "rescore", "--head", "zeroshot"]) == 0
    monkeypatch.setenv("NEARMISS_MODEL_STORE", str(tmp_path / "empty"))
    assert main(["--db", "../catalog.duckdb", "rescore", "--head", "zeroshot"]) == 2
    assert "missing from the model store" in _one_line(capsys, "rescore")


def test_changed_weights_are_one_line(catalog_copy, tmp_path, capsys):
    assert main(["--db", catalog_copy, "train", "--head", "zeroshot", "--allow-untrained"]) == 0
    capsys.readouterr()
    weights = tmp_path / "store" / "zeroshot" / "v1.pt"
    weights.write_bytes(weights.read_bytes() + b"x")
    assert main(["--db", catalog_copy, "score"]) == 2
    assert "does not match the SHA-256" in _one_line(capsys, "score")


def test_score_with_no_heads_and_no_detector_says_how(catalog_copy, capsys):
    assert main(["--db", catalog_copy, "score"]) == 2
    err = _one_line(capsys, "score")
    assert "--detector" in err and "ttc" in err


def _write_locked(path) -> bool:
    """Whether another process holds a lock on the file, asked with F_GETLK: taking a lock to find out (as
    opening it with DuckDB would) can make the CLI's own open fail while the test looks."""
    import fcntl
    import struct
    fd = os.open(path, os.O_RDONLY)
    try:
        query = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0)   # struct flock: type, whence, start, len, pid
        return struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, query))[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_a_writer_waits_for_a_held_lock_and_names_the_holder(clips, db, monkeypatch, capsys):
    Catalog(db).ensure()
    cli = shutil.which("duckdb", path=str(Path(sys.executable).parent)) or shutil.which("duckdb")
    # The CLI holds the file while its input stays open (a session at its prompt): until the test lets go,
    # however long this process takes to import the commands.
    holder = subprocess.Popen([cli, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    holder.stdin.write("SELECT 42;\n")
    holder.stdin.flush()
    deadline = time.monotonic() + 60   # until the CLI really holds the file (its launcher can be slow to start)
    while not _write_locked(db):
        if time.monotonic() > deadline or holder.poll() is not None:
            holder.kill()
            pytest.fail(f"the duckdb CLI never took the catalog's lock: {holder.communicate()}")
        time.sleep(0.05)
    monkeypatch.setenv("NEARMISS_LOCK_TIMEOUT_S", "1")
    assert main(["--db", db, "ingest", str(clips)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("nearmiss: waiting for PID") and "Traceback" not in "".join(lines)
    err = lines[-1]
    assert err.startswith("nearmiss ingest: ")
    # The pip package's `duckdb` is a launcher: the lock is held by the binary it starts.
    assert "stayed locked by PID" in err and "(duckdb)" in err and "NEARMISS_LOCK_TIMEOUT_S" in err
    monkeypatch.setenv("NEARMISS_LOCK_TIMEOUT_S", "60")
    threading.Timer(3.0, holder.stdin.close).start()   # the session ends a few seconds into the next run
    assert main(["--db", db, "ingest", str(clips)]) == 0   # waits, then completes
    assert "waiting for PID" in capsys.readouterr().err
    assert holder.wait(timeout=30) == 0


@pytest.mark.slow   # minutes on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_full_disk_says_so_and_the_next_run_completes(tmp_path, clips):
    """On a small tmpfs: featurize fills it; one clear line, a clear runs row, a sound catalog, no
    temporary files; with room again, the next run completes."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        db = str(mnt / "catalog.duckdb")
        env = {**os.environ, "CI": "1"}
        run = lambda *a: subprocess.run([*NEARMISS, "--db", db, *a], capture_output=True, text=True, env=env,  # noqa: E731
                                        cwd=ROOT, timeout=600)
        assert run("ingest", str(clips)).returncode == 0
        full = run("featurize", "--untrained", "--fps", "4")
        assert full.returncode == 2, full.stderr
        last = full.stderr.strip().splitlines()[-1]
        assert "disk is full" in last and "Traceback" not in full.stderr
        assert run("check").returncode == 0
        runs = run("query", "SELECT status, error FROM runs WHERE flow = 'featurize'", "--format", "csv")
        assert "failed" in runs.stdout and "No space left on device" in runs.stdout and "rollback" not in runs.stdout
        # No temporary files; the catalog's own write-ahead log may hold committed work until a checkpoint.
        assert set(p.name for p in mnt.iterdir()) <= {"catalog.duckdb", "catalog.duckdb.wal", "catalog.snapshot.duckdb"}
        subprocess.run(["mount", "-o", "remount,size=200m", str(mnt)], check=True)
        again = run("featurize", "--untrained", "--fps", "4")
        assert again.returncode == 0, again.stderr
        done = run("query", "SELECT count(*) FROM clip_features WHERE status = 'ok'", "--format", "csv")
        assert done.stdout.split() == ["count_star()", "8"]
        assert not (mnt / "catalog.duckdb.wal").exists()
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_a_command_starts_no_prefect_server_unless_asked(clips, tmp_path):
    """Plain commands run their steps in this process: no temporary server is started, and Prefect (and
    torch, for the commands that read the catalog only) is never imported."""
    db = str(tmp_path / "c.duckdb")
    env = {**os.environ, "CI": "1"}
    env.pop("PREFECT_API_URL", None)
    probe = ("import sys; from nearmiss.cli import main; rc = main(sys.argv[1:]); "
             "print('IMPORTED', sorted(m for m in ('prefect', 'torch', 'cv2') if m in sys.modules)); sys.exit(rc)")
    run = lambda *a: subprocess.run([sys.executable, "-c", probe, "--db", db, *a], cwd=ROOT, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    r = run("ingest", str(clips))
    assert r.returncode == 0, r.stderr
    assert "prefect" not in r.stdout.split("IMPORTED")[1]
    for argv in (["query", "SELECT count(*) FROM clips"], ["check"], ["score", "--quiet"]):
        r = run(*argv)
        assert r.stdout.split("IMPORTED")[1].strip() == "[]", (argv, r.stdout, r.stderr)
    # A configured server (a worker's machine) makes the flow commands flows; `query` and `check` stay plain:
    # 0.3 s, not the 4.9 s of importing Prefect's server API.
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
    for argv in (["query", "SELECT count(*) FROM clips"], ["check"]):
        r = run(*argv)
        assert r.returncode == 0 and r.stdout.split("IMPORTED")[1].strip() == "[]", (argv, r.stdout, r.stderr)


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_killing_a_command_leaves_no_prefect_server(clips, tmp_path):
    db = str(tmp_path / "c.duckdb")
    env = {**os.environ, "CI": "1"}
    env.pop("PREFECT_API_URL", None)
    cmd = subprocess.Popen([*NEARMISS, "--db", db, "ingest", str(clips), "--prefect"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = None
    deadline = time.monotonic() + 90
    while server is None and time.monotonic() < deadline and cmd.poll() is None:
        found = subprocess.run(["pgrep", "-P", str(cmd.pid), "-f", "uvicorn"], capture_output=True, text=True)
        server = int(found.stdout.split()[0]) if found.stdout.split() else None
        time.sleep(0.2)
    if server is None:
        cmd.kill()
        pytest.skip("the command finished before its temporary server could be seen")
    os.kill(cmd.pid, signal.SIGKILL)
    cmd.wait()
    for _ in range(100):
        if not Path(f"/proc/{server}").exists() or "zombie" in _state(server):
            break
        time.sleep(0.1)
    else:
        os.kill(server, signal.SIGKILL)
        pytest.fail("the temporary Prefect server outlived the killed command")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_prefect_state_stays_in_the_project(db, monkeypatch):
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    Catalog(db).ensure()
    assert main(["--db", db, "query", "SELECT 1"]) == 0
    assert os.environ["PREFECT_HOME"] == str(ROOT / ".prefect")
    assert os.environ["DO_NOT_TRACK"] == "1"


@pytest.mark.slow   # in the slow tier (bash scripts/test.sh -m slow)
def test_an_expected_error_inside_a_prefect_flow_is_one_line_too(catalog_copy):
    """Through a real flow run (--prefect): no Prefect traceback, no nanobind leak report at exit."""
    env = {**os.environ, "CI": "1"}
    env.pop("PREFECT_API_URL", None)
    r = subprocess.run([*NEARMISS, "--db", catalog_copy, "score", "--prefect"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "nanobind" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("nearmiss score: no heads in the catalog") or \
        any(line.startswith("nearmiss score: no heads") for line in r.stderr.splitlines())


@pytest.mark.parametrize("argv", [["query", "SELECT 1"], ["ingest", "CLIPS"], ["score"], ["report"], ["check"]])
def test_a_catalog_path_that_is_a_folder_or_under_a_missing_folder_is_one_line(tmp_path, clips, capsys, argv):
    """--db naming a folder, or a file in a folder that does not exist (a typo), is one line and rc 2; ingest
    creates no folders and no empty catalog."""
    argv = [str(clips) if a == "CLIPS" else a for a in argv]
    for db, says in ((tmp_path, "is a folder, not a catalog file"), (tmp_path / "no" / "such" / "c.duckdb",
                                                                        "does not exist")):
        assert main(["--db", str(db), *argv, "--quiet"] if argv[0] in ("ingest", "score") else
                    ["--db", str(db), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "no").exists()


@pytest.mark.slow   # six CLI processes: over 5 s on 2 cores
def test_an_unknown_head_is_one_line_everywhere_and_loads_no_model(tmp_path, clips):
    db = str(tmp_path / "c.duckdb")
    assert main(["--db", db, "ingest", str(clips), "--quiet"]) == 0
    probe = ("import sys; from nearmiss.cli import main; rc = main(sys.argv[1:]); "
             "print('IMPORTED', sorted(m for m in ('torch',) if m in sys.modules)); sys.exit(rc)")
    env = {**os.environ, "CI": "1"}
    env.pop("PREFECT_API_URL", None)
    for command in ("score", "report", "review", "rescore", "evaluate", "train"):
        r = subprocess.run([sys.executable, "-c", probe, "--db", db, command, "--head", "nosuchhead"],
                           cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, (command, r.stdout, r.stderr)
        assert r.stderr.strip().count("\n") == 0 and "unknown head 'nosuchhead'" in r.stderr, (command, r.stderr)
        if command in ("score", "report", "review"):
            assert r.stdout.split("IMPORTED")[1].strip() == "[]", (command, r.stdout)


@pytest.mark.slow   # starts Prefect's temporary server
def test_a_temporary_server_that_does_not_start_in_time_is_one_line_that_says_what_to_do(clips, tmp_path):
    env = {**os.environ, "CI": "1", "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"}   # no time at all: as on a machine far too busy
    env.pop("PREFECT_API_URL", None)
    r = subprocess.run([sys.executable, "-m", "nearmiss.cli", "--db", str(tmp_path / "c.duckdb"), "ingest",
                        str(clips), "--prefect", "--quiet"], cwd=Path(__file__).resolve().parents[1], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "temporary server did not answer" in err and "PREFECT_API_URL" in err


@pytest.mark.slow   # starts a real temporary Prefect server (10-30 s on 2 cores)
def test_a_temporary_server_never_takes_another_commands_server_for_its_own(monkeypatch):
    """Two commands starting together could land on one port: the second's uvicorn cannot bind it, and Prefect
    took the first's server, answering health checks there, for its own. Here another "server" holds the first
    port offered: the start must notice its own process died, move to a port of its own, and run its own server."""
    import http.server

    import httpx

    import flows.ephemeral as eph
    from prefect.server.api.server import SubprocessASGIServer

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):   # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    other = http.server.HTTPServer(("127.0.0.1", 0), Health)
    taken = other.server_address[1]
    threading.Thread(target=other.serve_forever, daemon=True).start()
    offered = iter([taken])
    real = eph.kernel_free_port
    monkeypatch.setattr(eph, "kernel_free_port", lambda: next(offered, None) or real())
    eph.tie_temporary_server_to_this_process()
    SubprocessASGIServer._instances.pop(None, None)
    server = SubprocessASGIServer()
    try:
        server.start(timeout=120)
        assert server.port != taken and server.server_process.poll() is None
        assert httpx.get(f"{server.api_url}/health", timeout=10).status_code == 200
        assert SubprocessASGIServer().find_available_port() != taken
    finally:
        server.stop()
        other.shutdown()
        SubprocessASGIServer._instances.pop(None, None)
