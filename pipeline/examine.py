"""Examine one file for ingest: what it is, and whether it needs reading at all.

Runs on ingest's worker threads, never writes the catalog: stat checks (folders, devices, empty,
too large, still being copied in), the unchanged-path shortcut, content hash, known duplicates and
known failures, then the probe (in a child process, given by the caller). Returns the `ClipRow` the
caller records.
"""
from __future__ import annotations

import errno
import os
import stat
import time
from typing import Callable, Protocol

from contracts.clips import ClipRow
from pipeline.discover import Candidate
from pipeline.hashing import sha256_file, sha256_text
from pipeline.probe import VideoInfo


class ExamineRules(Protocol):
    max_file_bytes: int
    settle_s: float
    retry_failed: bool


def _os_error(exc: OSError, what: str) -> str:
    reasons = {
        errno.ENOENT: "the file disappeared (moved or deleted) before it could be read",
        errno.EACCES: "no permission to read the file",
        errno.EPERM: "no permission to read the file",
        errno.ELOOP: "the path is a symbolic link loop (it never reaches a real file)",
        errno.EISDIR: "is a folder, not a video file",
        errno.EIO: "the storage reported an I/O error while reading the file",
    }
    return reasons.get(exc.errno, f"could not {what} the file: {exc.strerror or exc}")


def _failure(c: Candidate, error: str, clip_id: str | None = None, size: int | None = None) -> tuple:
    row = ClipRow(id=clip_id or f"unreadable:{sha256_text(c.raw)}", path=c.path, status="failed",
                  size_bytes=size, error=error)
    return row, None


def examine(c: Candidate, cfg: ExamineRules, seen: dict, known: dict,
            prober: Callable[[str], object]) -> tuple[ClipRow | None, int | None, str]:
    """Decide what a file is. Returns (row to record or None, mtime_ns, outcome).

    seen: path -> what the catalog last saw there (size_bytes, mtime_ns, status); known: clip id ->
    (status, error). prober(path) -> an Outcome whose value is a VideoInfo (in a child process)."""
    if c.problem:
        return (*_failure(c, c.problem), "failed")
    try:
        st = os.stat(c.raw)
    except OSError as exc:
        if exc.errno == errno.ENOENT and os.path.islink(c.raw):   # the link is there; what it names is not
            target = os.fsdecode(os.readlink(c.raw))
            return (*_failure(c, f"a symbolic link to a file that does not exist ({target})"), "failed")
        return (*_failure(c, _os_error(exc, "open")), "failed")
    if stat.S_ISDIR(st.st_mode):
        return (*_failure(c, "is a folder, not a video file"), "failed")
    if not stat.S_ISREG(st.st_mode):
        return (*_failure(c, "is not a regular file (device, pipe or socket)"), "failed")
    if st.st_size == 0:
        return (*_failure(c, "the file is empty (0 bytes)", size=0), "failed")
    if st.st_size > cfg.max_file_bytes:
        return (*_failure(c, f"the file is {st.st_size / 2**30:.1f} GiB, over the "
                             f"{cfg.max_file_bytes / 2**30:.0f} GiB limit (max_file_bytes); not read",
                          size=st.st_size), "failed")
    if cfg.settle_s > 0 and time.time() - st.st_mtime < cfg.settle_s:
        return None, None, "still_writing"   # a copy in progress: its bytes are not final yet
    prev = seen.get(c.path)
    if prev and prev.size_bytes == st.st_size and prev.mtime_ns == st.st_mtime_ns \
            and not (cfg.retry_failed and prev.status == "failed"):
        return None, None, "unchanged"
    try:
        clip_id = sha256_file(c.raw)
    except OSError as exc:
        return (*_failure(c, _os_error(exc, "read")), "failed")
    status = known.get(clip_id, (None, None))[0]
    if status == "ok":
        return ClipRow(clip_id, c.path, "ok", size_bytes=st.st_size), st.st_mtime_ns, "duplicate"
    if status == "failed" and not cfg.retry_failed:
        return ClipRow(clip_id, c.path, "failed", size_bytes=st.st_size), st.st_mtime_ns, "known_failed"
    result = prober(os.fsdecode(c.raw))
    if not result.ok:
        error = result.error
        if not os.path.exists(c.raw):
            error = "the file disappeared (moved or deleted) while it was being read"
        row = ClipRow(clip_id, c.path, "failed", size_bytes=st.st_size, error=error)
        return row, st.st_mtime_ns, "failed"
    info: VideoInfo = result.value
    row = ClipRow(clip_id, c.path, "ok", size_bytes=st.st_size, duration_s=info.duration_s, fps=info.fps,
                  n_frames=info.n_frames, width=info.width, height=info.height, codec=info.codec)
    return row, st.st_mtime_ns, "new"
