"""Labels sidecar: CSV with columns path (or file), class, event_start_s, event_end_s
and, optionally, event_peak_s (the moment of closest approach; evaluation
measures the peak-time error against it).

Parsed and validated here, before anything is written; every problem names
its row so a person can fix the file.
"""
from __future__ import annotations

import csv
import os
import math
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import LabelsError  # noqa: F401  (raised here)
from pipeline.discover import display_path
from contracts.taxonomy import CLASSES  # noqa: E402  (re-exported: the sidecar validates against it)
LABEL_COLUMNS = ("path", "class", "event_start_s", "event_end_s", "event_peak_s")


@dataclass(frozen=True)
class LabelEntry:
    row: int                 # 1-based line number in the file (header is line 1)
    path: str                # as written in the file
    cls: str
    event_start_s: float | None
    event_end_s: float | None
    event_peak_s: float | None = None

    def where(self, source: str) -> str:
        return f"{source} line {self.row} ({self.path})"


def _time(value: str | None, column: str, where: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        t = float(value)
    except ValueError:
        raise LabelsError(f"{where}: {column} {value!r} is not a number of seconds") from None
    if not math.isfinite(t) or t < 0:
        raise LabelsError(f"{where}: {column} {value!r} must be a time in seconds >= 0")
    return t


def read_labels(path: str | Path) -> list[LabelEntry]:
    """Read and validate every row; raises LabelsError listing each bad row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LabelsError(f"{path} is not a labels CSV (not UTF-8 text)") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    path_col = "path" if "path" in header else "file" if "file" in header else None
    if path_col is None or "class" not in header:
        # Name the columns that are missing, never echo the line: `labels` may point at any file.
        raise LabelsError(f"{path} is not a labels CSV: its first line needs the columns path (or file), class, "
                          f"event_start_s, event_end_s (it has {len(header)} comma-separated fields, and no "
                          f"{'class' if path_col else 'path or file'} column)")
    entries: list[LabelEntry] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        where = f"{path.name} line {i}"
        try:
            clip = row.get(path_col, "")
            if not clip:
                raise LabelsError(f"{where}: the {path_col} column is empty")
            where = f"{where} ({clip})"
            if clip in seen:
                raise LabelsError(f"{where}: this clip is already labelled on line {seen[clip]}")
            seen[clip] = i
            cls = row.get("class", "").lower()
            if cls not in CLASSES:
                raise LabelsError(f"{where}: unknown class {row.get('class')!r}; expected one of {', '.join(CLASSES)}")
            start = _time(row.get("event_start_s"), "event_start_s", where)
            end = _time(row.get("event_end_s"), "event_end_s", where)
            if (start is None) != (end is None):
                raise LabelsError(f"{where}: give both event_start_s and event_end_s, or neither")
            if start is not None and end < start:
                raise LabelsError(f"{where}: event ends ({end:g}s) before it starts ({start:g}s)")
            if cls == "background" and start is not None:
                raise LabelsError(f"{where}: a background clip has no near-miss event; leave the times empty")
            peak = _time(row.get("event_peak_s"), "event_peak_s", where)
            if peak is not None and (start is None or not start <= peak <= end):
                raise LabelsError(f"{where}: event_peak_s ({peak:g}s) must lie within the event")
            entries.append(LabelEntry(i, clip, cls, start, end, peak))
        except LabelsError as exc:
            problems.append(str(exc))
    if problems:
        raise LabelsError(f"{len(problems)} bad row(s) in {path}:\n  " + "\n  ".join(problems))
    return entries


def check_event_within(entry: LabelEntry, duration_s: float | None, source: str,
                       tolerance_s: float = 0.05) -> None:
    """An event cannot end after the clip does (a frame of slack for rounding)."""
    if entry.event_end_s is None or duration_s is None:
        return
    if entry.event_end_s > duration_s + tolerance_s:
        raise LabelsError(
            f"{entry.where(source)}: event ends at {entry.event_end_s:g}s, past the clip's end "
            f"({duration_s:.2f}s)"
        )


def write_labels(path: str | Path, rows: list[tuple[str, str, float | None, float | None, float | None]]) -> None:
    """rows: (path, class, start, end, peak); times None for background."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(LABEL_COLUMNS)
        for name, cls, *times in rows:
            w.writerow([name, cls, *("" if t is None else f"{t:.3f}" for t in times)])


def match_labels(entries: list[LabelEntry], labels_path: Path, index: list[tuple[str, str, str]],
                  source: str) -> tuple[list[tuple[LabelEntry, str]], list[str]]:
    """Find the clip each label row names: by path (relative to the labels file) or by file name."""
    by_path = {p: (cid, st) for p, cid, st in index}
    by_name: dict[str, set[tuple[str, str]]] = {}
    for p, cid, st in index:
        by_name.setdefault(os.path.basename(p), set()).add((cid, st))
    matched, errors = [], []
    for e in entries:
        target = os.path.normpath(os.path.join(labels_path.parent.resolve(), e.path))
        hit = by_path.get(display_path(os.fsencode(os.path.abspath(target))))
        if hit is None:
            cands = by_name.get(os.path.basename(e.path), set())
            if len({cid for cid, _ in cands}) > 1:
                errors.append(f"{e.where(source)}: the file name matches {len(cands)} different clips; "
                              "give its path instead")
                continue
            hit = next(iter(cands), None)
        if hit is None:
            errors.append(f"{e.where(source)}: no ingested clip has this path or file name")
        elif hit[1] != "ok":
            errors.append(f"{e.where(source)}: the clip failed to ingest, so its label was not stored")
        else:
            matched.append((e, hit[0]))
    return matched, errors
