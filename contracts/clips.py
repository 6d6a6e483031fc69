"""A clip as the catalog records it: ingest examines a file into one, catalog/clips.py stores it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClipRow:
    """A clip as the catalog records it (catalog/clips.py stores it)."""
    id: str
    path: str
    status: str  # 'ok' | 'failed'
    size_bytes: int | None = None
    duration_s: float | None = None
    fps: float | None = None
    n_frames: int | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    error: str | None = None
