import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import crashers
import steps.ingest as ingest_mod
import pipeline.examine as examine_mod
from catalog import Catalog
from flows.ingest import ingest_flow
from pipeline.specs import IngestConfig
from steps.ingest import ingest_batch, run_ingest
from nearmiss.cli import main
from pipeline.discover import discover
from pipeline.labels import read_labels
from pipeline.synth.dataset import LABELS_FILE, TRUTH_DIR

ROOT = Path(__file__).resolve().parents[1]


def rows(db, sql, params=()):
    with Catalog(db).read() as con:
        return con.execute(sql, list(params)).fetchall()


def status_by_name(db):
    return {os.path.basename(p): (s, e) for p, s, e in rows(db, "SELECT path, status, error FROM clips")}


def make_bad_inputs(folder: Path, good_clip: Path) -> None:
    """One file for each kind of bad input a real batch meets."""
    (folder / "empty.mp4").write_bytes(b"")
    data = good_clip.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) * 6 // 10])
    (folder / "random.mp4").write_bytes(os.urandom(50_000))
    (folder / "notes.mp4").write_text("this is a text file with a video extension\n" * 50)
    (folder / "folder.mp4").mkdir()
    os.symlink("loop_b.mp4", folder / "loop_a.mp4")
    os.symlink("loop_a.mp4", folder / "loop_b.mp4")
    os.symlink("moved_away.mp4", folder / "dangling.mp4")
    shutil.copy(good_clip, os.path.join(os.fsencode(folder), b"caf\xe9.mp4"))  # Latin-1 name
    with open(folder / "huge.mp4", "wb") as f:  # sparse: 65 GiB on paper, nothing on disk
        f.truncate(65 << 30)


EXPECTED_ERRORS = {
    "empty.mp4": "empty (0 bytes)",
    "truncated.mp4": "truncated or incomplete MP4",
    "random.mp4": "not a video FFmpeg can read",
    "notes.mp4": "a text file, not a video",
    "folder.mp4": "is a folder, not a video file",
    "loop_a.mp4": "symbolic link loop",
    "loop_b.mp4": "symbolic link loop",
    "dangling.mp4": "a symbolic link to a file that does not exist (moved_away.mp4)",
    "caf\\xe9.mp4": "not valid UTF-8",
    "huge.mp4": "over the 64 GiB limit",
}


def test_ingest_flow_with_labels_and_bad_inputs(prefect_server, clips, db):
    """Through Prefect: every good clip lands with its label; every bad file gets a readable error."""
    make_bad_inputs(clips, clips / "synth_s11_00000.mp4")
    result = ingest_flow([str(clips)], db=db, labels=str(clips / LABELS_FILE))

    assert result["new"] == 8 and result["failed"] == len(EXPECTED_ERRORS) and result["labels"] == 8
    assert result["duplicate"] == 0  # café.mp4 has good bytes but its name fails first
    by_name = status_by_name(db)
    for name, fragment in EXPECTED_ERRORS.items():
        status, error = by_name[name]
        assert status == "failed" and fragment in error, (name, error)
    truth = {p.stem + ".mp4": json.loads(p.read_text()) for p in (clips / TRUTH_DIR).glob("*.json")}
    for path, w, h, fps, n, codec in rows(db, "SELECT path, width, height, fps, n_frames, codec FROM clips"
                                              " WHERE status = 'ok'"):
        t = truth[os.path.basename(path)]
        assert (w, h, codec) == (320, 180, "h264") and fps == pytest.approx(15.0) and n == t["n_frames"]
    expected = {e.path: e for e in read_labels(clips / LABELS_FILE)}
    stored = rows(db, "SELECT p.path, l.class, l.event_start_s, l.event_end_s FROM labels l"
                      " JOIN clip_paths p ON p.clip_id = l.clip_id")
    assert len(stored) == 8
    for path, cls, start, end in stored:
        e = expected[os.path.basename(path)]
        assert (cls, start, end) == (e.cls, e.event_start_s, e.event_end_s)
    (run,) = rows(db, "SELECT flow, status, prefect_flow_run_id, counts FROM runs")
    assert run[0] == "ingest" and run[1] == "completed" and run[2]
    assert json.loads(run[3])["failed"] == len(EXPECTED_ERRORS)


def test_same_bytes_twice_in_one_batch_count_as_one_new_and_one_duplicate(clips, db):
    shutil.copy(clips / "synth_s11_00003.mp4", clips / "copy_in_the_same_batch.mp4")
    s = run_ingest([str(clips)], db=db)
    assert (s.new, s.duplicate, s.failed) == (8, 1, 0)
    assert rows(db, "SELECT count(*), (SELECT count(*) FROM clip_paths) FROM clips") == [(8, 9)]


def test_same_bytes_under_another_name_add_a_path_not_a_clip(clips, db):
    run_ingest([str(clips)], db=db)
    (clips / "copies").mkdir()
    shutil.copy(clips / "synth_s11_00003.mp4", clips / "copies" / "renamed.mp4")
    s = run_ingest([str(clips)], db=db)
    assert (s.new, s.duplicate, s.unchanged) == (0, 1, 8)
    assert rows(db, "SELECT count(*) FROM clips") == [(8,)]
    (paths,) = rows(db, "SELECT list(path ORDER BY path) FROM clip_paths GROUP BY clip_id HAVING count(*) > 1")
    assert [os.path.basename(p) for p in paths[0]] == ["renamed.mp4", "synth_s11_00003.mp4"]


def test_rerun_changes_nothing(clips, db):
    make_bad_inputs(clips, clips / "synth_s11_00001.mp4")
    run_ingest([str(clips)], db=db, labels=str(clips / LABELS_FILE))
    snapshot = {t: rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in ("clips", "clip_paths", "labels")}
    s = run_ingest([str(clips)], db=db, labels=str(clips / LABELS_FILE))
    assert s.new == 0 and s.duplicate == 0
    assert {t: rows(db, f"SELECT * FROM {t} ORDER BY ALL") for t in snapshot} == snapshot
    assert [r[0] for r in rows(db, "SELECT status FROM runs")] == ["completed", "completed"]


def test_failed_batch_loses_nothing_already_stored(clips, db, tmp_path):
    run_ingest([str(clips)], db=db)
    before = rows(db, "SELECT * FROM clips ORDER BY id")
    bad = tmp_path / "bad"
    bad.mkdir()
    make_bad_inputs(bad, clips / "synth_s11_00002.mp4")
    run_ingest([str(bad)], db=db)
    after = {r[0]: r for r in rows(db, "SELECT * FROM clips")}
    assert all(after[r[0]] == r for r in before)


def test_unreadable_file_is_recorded_and_recovers(clips, db, monkeypatch, is_root):
    target = clips / "synth_s11_00004.mp4"
    os.chmod(target, 0)
    if is_root:  # root reads anything; make the kernel's answer explicit
        real = examine_mod.sha256_file

        def deny(path):
            if os.fsdecode(path).endswith("synth_s11_00004.mp4"):
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(path)
        monkeypatch.setattr(examine_mod, "sha256_file", deny)
    s = run_ingest([str(clips)], db=db)
    assert (s.new, s.failed) == (7, 1)
    assert status_by_name(db)["synth_s11_00004.mp4"] == ("failed", "no permission to read the file")
    os.chmod(target, 0o644)
    monkeypatch.undo()
    s = run_ingest([str(clips)], db=db)
    assert (s.new, s.unchanged) == (1, 7)
    assert rows(db, "SELECT count(*), count(*) FILTER (WHERE status = 'ok') FROM clips") == [(8, 8)]


def test_file_that_vanishes_mid_run(clips, db):
    candidates = discover([str(clips)])
    os.remove(clips / "synth_s11_00005.mp4")
    outcomes = ingest_batch(db, candidates, IngestConfig())
    failed = [o for o in outcomes if o.outcome == "failed"]
    assert len(failed) == 1 and "disappeared" in failed[0].error
    assert sum(o.outcome == "new" for o in outcomes) == 7
    s = run_ingest([str(clips / "gone.mp4")], db=db)
    assert s.failed == 1 and "no such file" in s.failures[0][1]


def test_decoder_crash_and_hang_cost_one_file_each(clips, db, monkeypatch):
    shutil.copy(clips / "synth_s11_00000.mp4", clips / "crash_me.mp4")
    (clips / "hang_me.mp4").write_bytes(b"\x00" * 1000)
    monkeypatch.setattr(ingest_mod, "probe_video", crashers.probe_or_misbehave)
    s = run_ingest([str(clips)], db=db, cfg=IngestConfig(probe_timeout_s=6.0))  # a good probe takes < 1 s
    assert (s.new, s.failed) == (8, 2)
    by_name = status_by_name(db)
    assert "crashed" in by_name["crash_me.mp4"][1] and "SIGSEGV" in by_name["crash_me.mp4"][1]
    assert "timed out" in by_name["hang_me.mp4"][1]


def test_labels_naming_a_missing_clip_or_an_event_past_the_end(clips, db, capsys):
    (clips / LABELS_FILE).write_text(
        "path,class,event_start_s,event_end_s\n"
        "synth_s11_00000.mp4,vehicle,0.5,1.0\n"
        "synth_s11_00001.mp4,vehicle,1.0,99.0\n"
        "not_there.mp4,pedestrian,1.0,2.0\n")
    assert main(["--db", db, "ingest", str(clips), "--labels", str(clips / LABELS_FILE)]) == 1
    err = capsys.readouterr().out
    assert "labels.csv line 3 (synth_s11_00001.mp4): event ends at 99s, past the clip's end" in err
    assert "labels.csv line 4 (not_there.mp4): no ingested clip has this path or file name" in err
    assert rows(db, "SELECT count(*) FROM labels") == [(1,)]


def test_bad_labels_file_is_refused_before_anything_is_written(clips, db, capsys):
    (clips / "bad.csv").write_text("path,class,event_start_s,event_end_s\nsynth_s11_00000.mp4,truck,1,2\n")
    assert main(["--db", db, "ingest", str(clips), "--labels", str(clips / "bad.csv")]) == 2
    assert "unknown class 'truck'" in capsys.readouterr().err
    assert not os.path.exists(db)


RESUMABLE = """
import sys, crashers, steps.ingest as m
m.probe_video = crashers.slow_probe
m.run_ingest([sys.argv[1]], db=sys.argv[2], cfg=m.IngestConfig(workers=1))
"""


@pytest.mark.slow   # over 5 s on 2 cores: in the slow tier (bash scripts/test.sh -m slow)
def test_killed_run_resumes_without_duplicates(clips, db):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.Popen([sys.executable, "-c", RESUMABLE, str(clips), db], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if os.path.exists(db) and rows(db, "SELECT count(*) FROM clips")[0][0] >= 2:
                break
            assert proc.poll() is None, "ingest finished before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = rows(db, "SELECT count(*) FROM clips")[0][0]
    assert 2 <= done_before < 8
    s = run_ingest([str(clips)], db=db)
    assert s.unchanged == done_before and s.new == 8 - done_before
    assert rows(db, "SELECT count(*), count(DISTINCT id) FROM clips WHERE status = 'ok'") == [(8, 8)]
    assert rows(db, "SELECT count(*) FROM clip_paths") == [(8,)]
    assert [r[0] for r in rows(db, "SELECT status FROM runs ORDER BY started_at")] == ["crashed", "completed"]
