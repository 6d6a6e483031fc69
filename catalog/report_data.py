"""What the incident report shows: the top incidents with their scores over time, and evaluations."""
from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np

from contracts.taxonomy import CLASSES


@dataclass
class ReportIncident:
    clip_id: str
    path: str
    model: str
    feature_set_id: str
    start_s: float
    peak_s: float
    end_s: float
    score: float
    cls: str
    probs: dict
    step_t_s: np.ndarray
    step_scores: np.ndarray
    label: str | None
    label_start_s: float | None = None
    label_end_s: float | None = None
    untrained_features: bool = False    # the feature set's CLIP weights are random
    parties: tuple[int, ...] = ()       # track ids of the road users the head names
    event_idx: int = 0                  # the incident's index among its clip's (with model: its key)
    why: str | None = None              # what made the head alarm (the cue, its numbers, the road users)
    party_names: tuple[str, ...] = ()   # each party as a person reads it: "road user #5 (car)"


@dataclass
class TrackView:
    """The incident's most critical road user: its boxes and time-to-collision over time."""
    track_id: int
    cls: str
    t_s: np.ndarray
    boxes: np.ndarray
    ttc_s: np.ndarray


@dataclass(frozen=True)
class AlarmLevel:
    """The alarm level in force for a head version, and whether labelled normal driving set it."""
    threshold: float
    calibrated: bool
    method: str


def alarm_level(con: duckdb.DuckDBPyConnection, model_ref: str) -> AlarmLevel | None:
    """The level a head version alarms at (its calibration, else its event threshold); None: it records none."""
    name, version = model_ref.split("@")
    row = con.execute("SELECT params FROM models WHERE name = ? AND version = ?", [name, int(version)]).fetchone()
    params = json.loads(row[0]) if row and row[0] else {}
    if level := params.get("alarm_level"):
        return AlarmLevel(float(level["threshold"]), not str(level["method"]).startswith("uncalibrated"),
                          str(level["method"]))
    if (events := params.get("events")) and "threshold" in events:
        return AlarmLevel(float(events["threshold"]), True, "the head's event threshold")
    return None


def heads_with_incidents(con: duckdb.DuckDBPyConnection) -> list[tuple[str, bool, int]]:
    """(head, whether its feature set has random CLIP weights, incidents) for each head's newest version that
    has incidents: what the registry picks the report's default head from (models/head_registry.py)."""
    return [(r[0], bool(r[1]), int(r[2])) for r in con.execute(
        "SELECT i.model_name, fs.untrained, count(*) FROM latest_incidents i"
        " JOIN latest_models m ON m.name = i.model_name JOIN feature_sets fs ON fs.id = m.feature_set_id"
        " GROUP BY i.model_name, fs.untrained ORDER BY 1").fetchall()]


def top_incidents(con: duckdb.DuckDBPyConnection, head: str | None, where: str | None = None,
                  limit: int = 20) -> list[ReportIncident]:
    """Highest-scoring incidents of the newest version of `head` (None: there is none to show)."""
    if head is None:
        return []
    rows = con.execute(
        "SELECT i.clip_id, i.path, i.model_name || '@' || i.model_version, p.feature_set_id, i.start_s, i.peak_s,"
        " i.end_s, i.score, i.class, " + ", ".join(f"p.p_{c}" for c in CLASSES) + ", p.step_t_s,"
        " p.step_scores, l.class, l.event_start_s, l.event_end_s, fs.untrained, i.parties, i.event_idx, i.why"
        " FROM latest_incidents i JOIN predictions p ON p.clip_id = i.clip_id AND p.model_name = i.model_name"
        " AND p.model_version = i.model_version JOIN clips c ON c.id = i.clip_id"
        " JOIN feature_sets fs ON fs.id = p.feature_set_id"
        " LEFT JOIN (SELECT * FROM labels QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY created_at DESC)"
        " = 1) l ON l.clip_id = i.clip_id"
        " WHERE i.model_name = ?" + (f" AND ({where})" if where else "")
        + " ORDER BY i.score DESC, i.clip_id, i.event_idx LIMIT ?", [head, limit]).fetchall()
    out = [ReportIncident(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                          dict(zip(CLASSES, r[9:13])),
                          np.asarray(r[13] or [], np.float32), np.asarray(r[14] or [], np.float32), r[15], r[16],
                          r[17], bool(r[18]), tuple(r[19] or ()), r[20], r[21])
           for r in rows]
    for inc in out:
        inc.party_names = party_names(con, inc.clip_id, inc.feature_set_id, inc.parties, inc.cls)
    return out


def party_names(con: duckdb.DuckDBPyConnection, clip_id: str, fs_id: str, parties: tuple[int, ...],
                incident_cls: str) -> tuple[str, ...]:
    """"road user #5 (car)" per party: the detector's commonest label for the track. A person behind a vehicle or
    bicycle incident is a rider (the head takes a rider for its two-wheeler), and the name says so, so that the
    incident's class and its road user's read the same."""
    if not parties:
        return ()
    found = dict(con.execute(
        "SELECT track_id, mode(coalesce(coco_class, class)) FROM objects WHERE clip_id = ? AND feature_set_id = ?"
        " AND list_contains(?::INTEGER[], track_id) GROUP BY track_id", [clip_id, fs_id, list(parties)]).fetchall())
    names = []
    for p in parties:
        label = found.get(p)
        if label == "person" and incident_cls in ("vehicle", "bicycle"):
            label = f"person riding: {'a bicycle' if incident_cls == 'bicycle' else 'a two-wheeler, vehicle'}"
        names.append(f"road user #{p}" + (f" ({label})" if label else ""))
    return tuple(names)


@dataclass
class ClipState:
    """One clip in the report's list of every clip: where it stands with the head."""
    path: str
    state: str                  # scored | failed | not featurized | not scored
    reason: str | None          # why it failed (ingest or featurize)
    score: float | None         # the head's highest score on it
    predicted: str | None
    alarms: int
    reviewed: int               # its incidents with a verdict
    label: str | None


def clip_states(con: duckdb.DuckDBPyConnection, model_ref: str) -> list[ClipState]:
    """Every current clip with its state for this head version: scored (its highest score and alarms), failed
    (with the reason, at ingest or at featurize in the head's feature set), or not featurized / not scored."""
    name, version = model_ref.split("@")
    rows = con.execute(
        "WITH m AS (SELECT feature_set_id FROM models WHERE name = $1 AND version = $2)"
        " SELECT c.path, c.status, c.error, f.status, f.error, p.near_miss_score, p.predicted_class,"
        " (SELECT count(*) FROM incidents i WHERE i.clip_id = c.id AND i.model_name = $1 AND i.model_version = $2),"
        " (SELECT count(*) FROM latest_reviews r WHERE r.clip_id = c.id AND r.model_name = $1"
        "  AND r.model_version = $2), l.class"
        " FROM current_clips c"
        " LEFT JOIN clip_features f ON f.clip_id = c.id AND f.feature_set_id = (SELECT feature_set_id FROM m)"
        " LEFT JOIN predictions p ON p.clip_id = c.id AND p.model_name = $1 AND p.model_version = $2"
        " LEFT JOIN (SELECT * FROM labels QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY created_at DESC)"
        " = 1) l ON l.clip_id = c.id"
        " ORDER BY p.near_miss_score DESC NULLS LAST, c.path", [name, int(version)]).fetchall()
    out = []
    for path, c_status, c_error, f_status, f_error, score, predicted, alarms, reviewed, label in rows:
        if c_status == "failed":
            state, reason = "failed", f"ingest: {c_error}"
        elif f_status == "failed":
            state, reason = "failed", f"featurize: {f_error}"
        elif score is not None:
            state, reason = "scored", None
        elif f_status == "ok":
            state, reason = "not scored", None
        else:
            state, reason = "not featurized", None
        out.append(ClipState(path, state, reason, score, predicted, int(alarms), int(reviewed), label))
    return out


@dataclass
class MissedEvent:
    """A labelled near-miss the head scored without an incident."""
    clip_id: str
    path: str
    cls: str
    event_start_s: float | None
    event_end_s: float | None
    score: float
    predicted: str


def missed_events(con: duckdb.DuckDBPyConnection, model_ref: str, limit: int = 50) -> list[MissedEvent]:
    """Clips labelled a near-miss (their newest label) that this head version scored with no incident."""
    name, version = model_ref.split("@")
    rows = con.execute(
        "SELECT p.clip_id, c.path, l.class, l.event_start_s, l.event_end_s, p.near_miss_score, p.predicted_class"
        " FROM predictions p JOIN current_clips c ON c.id = p.clip_id"
        " JOIN (SELECT * FROM labels QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY created_at DESC) = 1)"
        " l ON l.clip_id = p.clip_id WHERE p.model_name = ? AND p.model_version = ? AND l.class <> 'background'"
        " AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.clip_id = p.clip_id AND i.model_name = p.model_name"
        " AND i.model_version = p.model_version) ORDER BY p.near_miss_score DESC, c.path LIMIT ?",
        [name, int(version), limit]).fetchall()
    return [MissedEvent(*r) for r in rows]


def critical_track(con: duckdb.DuckDBPyConnection, clip_id: str, fs_id: str, peak_s: float,
                   within_s: float = 0.5, parties: tuple[int, ...] = ()) -> TrackView | None:
    """The road user the incident names (its first party), else the one with the lowest time-to-collision
    near the peak, in or entering the path first."""
    found = con.execute(
        "SELECT track_id FROM objects WHERE clip_id = ? AND feature_set_id = ? AND abs(t_s - ?) <= ?"
        " ORDER BY list_contains(?::INTEGER[], track_id) DESC, (in_path OR entering) DESC, ttc_s,"
        " score DESC LIMIT 1", [clip_id, fs_id, peak_s, within_s, list(parties)]).fetchall()
    if not found:
        return None
    rows = con.execute("SELECT t_s, x1, y1, x2, y2, ttc_s, class FROM objects WHERE clip_id = ? AND feature_set_id = ?"
                       " AND track_id = ? ORDER BY t_s", [clip_id, fs_id, found[0][0]]).fetchall()
    a = np.asarray([r[:6] for r in rows], np.float64)
    return TrackView(found[0][0], rows[0][6], a[:, 0], a[:, 1:5].astype(np.float32), a[:, 5])


def motion_near(con: duckdb.DuckDBPyConnection, clip_id: str, fs_id: str, times: list[float]) -> list[np.ndarray]:
    """The stored foreground-energy grid of the sampled frame nearest each time."""
    rows = con.execute("SELECT t_s, fg_energy FROM motion_features WHERE clip_id = ? AND feature_set_id = ?"
                       " ORDER BY frame_idx", [clip_id, fs_id]).fetchall()
    if not rows:
        return [None] * len(times)
    t = np.array([r[0] for r in rows])
    return [np.asarray(rows[int(np.argmin(np.abs(t - x)))][1], np.float32) for x in times]


def latest_evaluations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int, dict]]:
    """(model ref, split, clips, metrics) of the newest evaluation of each head's newest version."""
    rows = con.execute(
        "SELECT e.model_name || '@' || e.model_version, e.split, e.clips, e.metrics FROM evaluations e"
        " JOIN latest_models m ON m.name = e.model_name AND m.version = e.model_version"
        " QUALIFY row_number() OVER (PARTITION BY e.model_name, e.split ORDER BY e.created_at DESC) = 1"
        " ORDER BY 1, 2").fetchall()
    return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]
