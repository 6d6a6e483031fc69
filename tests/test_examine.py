"""Ingest's examination of one file, on its own: no catalog, no Prefect, a prober that records its calls."""
import os
import time
from dataclasses import dataclass

from pipeline.discover import Candidate
from pipeline.examine import examine
from pipeline.hashing import sha256_file
from pipeline.isolation import Outcome
from pipeline.probe import VideoInfo


@dataclass
class Rules:
    max_file_bytes: int = 1 << 20
    settle_s: float = 0.0
    retry_failed: bool = False


@dataclass
class Seen:
    clip_id: str
    size_bytes: int
    mtime_ns: int
    status: str


class Prober:
    def __init__(self):
        self.calls = []

    def __call__(self, path):
        self.calls.append(path)
        return Outcome(True, value=VideoInfo(duration_s=2.0, fps=15.0, n_frames=30, width=64, height=48, codec="h264"))


def candidate(path) -> Candidate:
    return Candidate(str(path), os.fsencode(str(path)))


def test_files_that_are_not_videos_fail_without_a_probe(tmp_path):
    prober = Prober()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "big.mp4").write_bytes(b"x" * 2048)
    (tmp_path / "dir.mp4").mkdir()
    verdicts = {name: examine(candidate(tmp_path / name), Rules(max_file_bytes=1024), {}, {}, prober)
                for name in ("empty.mp4", "big.mp4", "dir.mp4", "missing.mp4")}
    assert {n: v[2] for n, v in verdicts.items()} == dict.fromkeys(verdicts, "failed")
    assert "empty" in verdicts["empty.mp4"][0].error
    assert "over the" in verdicts["big.mp4"][0].error
    assert "folder" in verdicts["dir.mp4"][0].error
    assert "disappeared" in verdicts["missing.mp4"][0].error
    assert prober.calls == []


def test_a_new_file_is_hashed_and_probed_once_then_skipped(tmp_path):
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"not really a video, the prober says it is")
    prober = Prober()
    row, mtime_ns, outcome = examine(candidate(clip), Rules(), {}, {}, prober)
    assert (outcome, row.id, row.status, row.fps) == ("new", sha256_file(clip), "ok", 15.0)
    seen = {str(clip): Seen(row.id, clip.stat().st_size, mtime_ns, "ok")}
    assert examine(candidate(clip), Rules(), seen, {row.id: ("ok", None)}, prober)[2] == "unchanged"
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(clip.read_bytes())
    assert examine(candidate(copy), Rules(), seen, {row.id: ("ok", None)}, prober)[2] == "duplicate"
    assert prober.calls == [str(clip)]


def test_a_file_still_being_copied_waits_for_the_next_run(tmp_path):
    clip = tmp_path / "growing.mp4"
    clip.write_bytes(b"partial")
    prober = Prober()
    assert examine(candidate(clip), Rules(settle_s=60), {}, {}, prober) == (None, None, "still_writing")
    old = time.time() - 120
    os.utime(clip, (old, old))
    assert examine(candidate(clip), Rules(settle_s=60), {}, {}, prober)[2] == "new"
