"""Ground-truth label rows."""
from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class LabelRow:
    clip_id: str
    cls: str
    event_start_s: float | None
    event_end_s: float | None
    source: str
    event_peak_s: float | None = None


def upsert_labels(con: duckdb.DuckDBPyConnection, rows: list[LabelRow]) -> int:
    for r in rows:
        con.execute(
            "INSERT INTO labels (clip_id, class, event_start_s, event_end_s, event_peak_s, source)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (clip_id, source) DO UPDATE SET"
            " class = excluded.class, event_start_s = excluded.event_start_s,"
            " event_end_s = excluded.event_end_s, event_peak_s = excluded.event_peak_s",
            [r.clip_id, r.cls, r.event_start_s, r.event_end_s, r.event_peak_s, r.source],
        )
    return len(rows)
