"""Turn the user's PATH arguments (files, folders, globs) into candidate files.

Problems that are visible before reading a byte (a folder named x.mp4, a
name that is not UTF-8, a path that is gone) become candidates with the
problem attached, so the catalog records them instead of the batch stopping.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".wmv", ".flv", ".3gp", ".h264", ".hevc",
})


@dataclass(frozen=True)
class Candidate:
    path: str              # text form for the catalog (invalid bytes shown as \xNN)
    raw: bytes             # the real file-system name, for opening
    problem: str | None = None


def display_path(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _candidate(raw: bytes, problem: str | None = None) -> Candidate:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        problem = problem or (
            "file name is not valid UTF-8; the catalog stores paths as text, so rename the file "
            "(e.g. with `convmv`) and ingest it again"
        )
    return Candidate(display_path(raw), raw, problem)


def _walk(root: bytes, out: list[Candidate]) -> None:
    # followlinks=False: a symlinked folder loop cannot recurse forever.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for d in list(dirnames):
            if os.path.splitext(d)[1].lower().decode("utf-8", "replace") in VIDEO_EXTENSIONS:
                out.append(_candidate(os.path.join(dirpath, d),
                                      "is a folder, not a video file (its name ends like a video)"))
                dirnames.remove(d)
        dirnames.sort()
        for f in sorted(filenames):
            if os.path.splitext(f)[1].lower().decode("utf-8", "replace") in VIDEO_EXTENSIONS:
                out.append(_candidate(os.path.join(dirpath, f)))


def discover(paths: list[str | os.PathLike | bytes]) -> list[Candidate]:
    """Files named explicitly are always tried; folders are walked for video extensions."""
    out: list[Candidate] = []
    for p in paths:
        raw = os.fsencode(p)
        text = os.fsdecode(raw)
        if glob.has_magic(text) and not os.path.lexists(raw):
            matches = sorted(glob.glob(os.fsencode(text), recursive=True))
            if not matches:
                out.append(_candidate(raw, "no file matches this pattern"))
            for m in matches:
                (_walk(m, out) if os.path.isdir(m) else out.append(_candidate(m)))
        elif os.path.isdir(raw):
            _walk(raw, out)
        elif not os.path.lexists(raw):
            out.append(_candidate(raw, "no such file (it may have been moved or deleted)"))
        else:
            out.append(_candidate(raw))
    # Absolute, de-duplicated, stable order.
    seen: dict[bytes, Candidate] = {}
    for c in out:
        absolute = os.path.abspath(c.raw)
        if absolute not in seen:
            seen[absolute] = Candidate(display_path(absolute), absolute, c.problem)
    return list(seen.values())


def is_video_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS
