"""Reviewers' verdicts on incidents, and the labels they make.

`reviews` is append-only: a second verdict on an incident is a new row, and the newest one counts
(`latest_reviews`). Each verdict is written with the clip's review label in one short transaction:
- a real near-miss: a labelled event (the incident's start, peak and end, the reviewer's class for the
  other party), source `review`;
- not a near-miss: the incident's window labelled background, unless a sidecar already labels the clip a
  near-miss (a false alarm beside a real event does not make the clip normal driving);
- unsure: no label.
With several reviewed incidents in a clip, its label is the strongest real one; a verdict that takes
the last real one back leaves the clip's review label as its other verdicts make it.
"""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from contracts.taxonomy import CLASSES

VERDICTS = ("real", "not", "unsure")
REVIEW_SOURCE = "review"


@dataclass(frozen=True)
class Verdict:
    clip_id: str
    model_name: str
    model_version: int
    event_idx: int
    verdict: str                  # real | not | unsure
    cls: str | None               # the other party's class (bicycle, pedestrian, vehicle) for a real one
    reviewer: str

    def check(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}")
        if self.cls is not None and (self.cls not in CLASSES or self.cls == "background"):
            raise ValueError(f"the other party's class must be bicycle, pedestrian or vehicle, not {self.cls!r}")
        if not self.reviewer.strip():
            raise ValueError("a verdict needs a reviewer's name")


def record_verdict(con: duckdb.DuckDBPyConnection, v: Verdict) -> dict:
    """Append the verdict and rewrite the clip's review label, in the caller's transaction. Returns the
    incident's latest verdict as stored."""
    v.check()
    rows = con.execute("SELECT start_s, peak_s, end_s, class FROM incidents WHERE clip_id = ? AND model_name = ?"
                       " AND model_version = ? AND event_idx = ?",
                       [v.clip_id, v.model_name, v.model_version, v.event_idx]).fetchall()
    found = rows[0] if rows else None
    if found is None:
        raise ValueError(f"no incident {v.event_idx} of {v.model_name}@{v.model_version} in clip {v.clip_id[:12]}")
    start, peak, end, predicted = found
    cls = v.cls or (predicted if v.verdict == "real" and predicted in CLASSES else None)
    con.execute("INSERT INTO reviews (clip_id, model_name, model_version, event_idx, start_s, peak_s, end_s, verdict,"
                " class, reviewer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [v.clip_id, v.model_name, v.model_version, v.event_idx, start, peak, end, v.verdict, cls, v.reviewer])
    _relabel(con, v.clip_id)
    return latest_verdicts(con, [v.clip_id])[(v.clip_id, v.model_name, v.model_version, v.event_idx)]


def _relabel(con: duckdb.DuckDBPyConnection, clip_id: str) -> None:
    latest = con.execute("SELECT verdict, class, start_s, peak_s, end_s FROM latest_reviews WHERE clip_id = ?"
                         " ORDER BY created_at DESC", [clip_id]).fetchall()
    con.execute("DELETE FROM labels WHERE clip_id = ? AND source = ?", [clip_id, REVIEW_SOURCE])
    real = [r for r in latest if r[0] == "real"]
    if real:
        _, cls, start, peak, end = real[0]
        row = [cls or "vehicle", start, end, peak]
    elif any(r[0] == "not" for r in latest):
        (sidecar_event,), = con.execute("SELECT count(*) FROM labels WHERE clip_id = ? AND class <> 'background'",
                                        [clip_id]).fetchall()
        if sidecar_event:
            return
        starts = [r[2] for r in latest if r[0] == "not"]
        ends = [r[4] for r in latest if r[0] == "not"]
        row = ["background", min(starts), max(ends), None]
    else:
        return
    con.execute("INSERT INTO labels (clip_id, class, event_start_s, event_end_s, event_peak_s, source)"
                " VALUES (?, ?, ?, ?, ?, ?)", [clip_id, *row, REVIEW_SOURCE])


def latest_verdicts(con: duckdb.DuckDBPyConnection, clip_ids: list[str] | None = None) -> dict:
    """(clip_id, model_name, model_version, event_idx) -> {verdict, class, reviewer, at, reviews}."""
    sql = ("SELECT clip_id, model_name, model_version, event_idx, verdict, class, reviewer, created_at,"
           " count(*) OVER (PARTITION BY clip_id, model_name, model_version, event_idx) FROM reviews"
           + (" WHERE list_contains(?, clip_id)" if clip_ids is not None else "")
           + " QUALIFY row_number() OVER (PARTITION BY clip_id, model_name, model_version, event_idx"
           " ORDER BY created_at DESC) = 1")
    rows = con.execute(sql, [clip_ids] if clip_ids is not None else []).fetchall()
    return {tuple(r[:4]): {"verdict": r[4], "class": r[5], "reviewer": r[6], "at": str(r[7]), "reviews": r[8]}
            for r in rows}
