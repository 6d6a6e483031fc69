"""Where featurized clips go: one sink, two destinations.

Each window's rows are spilled to local Parquet as they come (never a whole clip in memory), then the
finished clip goes either
- to the catalog, in one transaction (the single writer: a featurize run in this process), or
- to a shard in the staging area (a Dask worker, which never opens the catalog; the driver merges it).
The feature set's EmbCLIP projection comes from the catalog (and is stored there once fitted), or, on a
worker, is the one the driver handed it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from catalog.connection import Catalog
from catalog.features import (clip_rows, failure_rows, load_projection, record_feature_failure, save_projection,
                              store_spilled_clip)
from catalog.spill import ClipSpill, SpillFolder
from catalog.staging import ShardWriter
from contracts.projection import ChannelProjection


@dataclass
class FeatureSink:
    fs_id: str
    meta: dict                              # recorded per clip: decoder, device
    spill: SpillFolder
    catalog: Catalog | None = None          # the single writer: each clip stored in one transaction
    shard: ShardWriter | None = None        # a worker: each clip appended to its shard
    projection: ChannelProjection | None = None   # a worker's: fitted by the driver
    on_clip: Callable[[str, str | None, int], None] | None = None   # (clip_id, error, frames) as each ends
    results: list[tuple[str, str | None, int]] = field(default_factory=list)
    _clips: dict[str, ClipSpill] = field(default_factory=dict)

    def __post_init__(self):
        if (self.catalog is None) == (self.shard is None):
            raise ValueError("a feature sink writes to the catalog or to a shard: give exactly one")

    def stored_projection(self) -> ChannelProjection | None:
        if self.shard is not None:
            return self.projection
        return stored_projection(self.catalog, self.fs_id)

    def keep_projection(self, fitted: ChannelProjection) -> ChannelProjection:
        if self.shard is not None:
            raise RuntimeError("a worker was sent clips before the feature set's EmbCLIP projection was fitted")
        with self.catalog.write() as con:
            save_projection(con, self.fs_id, fitted.mean, fitted.matrix, fitted.fitted_on_frames)
        return self.stored_projection()   # a parallel run may have stored one first: use that

    def window(self, work, part) -> None:
        clip = self._clips.get(work.clip.clip_id) or self._clips.setdefault(
            work.clip.clip_id, self.spill.clip(work.clip.clip_id, self.fs_id))
        clip.add(part.start, part.times, part.embedding, part.embclip, part.motion, part.flow, part.embedded_at)

    def done(self, work) -> None:
        spill = self._clips.pop(work.clip.clip_id)
        meta = {**self.meta, "decoder": work.decoder, "seconds": work.seconds}
        if self.catalog is not None:
            with self.catalog.write() as con:
                store_spilled_clip(con, spill, len(work.times), meta, work.objects, work.object_summary)
        else:   # the clip's rows as one process stores them, the status row last
            for table, rows in spill.rows(work.object_summary):
                self.shard.append(table, rows)
            for table, rows in clip_rows(work.clip.clip_id, self.fs_id, len(work.times), meta,
                                         work.objects).items():
                self.shard.append(table, rows)
        spill.remove()
        self._ended(work.clip.clip_id, None, len(work.times))

    def failed(self, work) -> None:
        if spill := self._clips.pop(work.clip.clip_id, None):
            spill.remove()
        if self.catalog is not None:
            with self.catalog.write() as con:
                record_feature_failure(con, work.clip.clip_id, self.fs_id, work.error, self.meta)
        else:
            for table, rows in failure_rows(work.clip.clip_id, self.fs_id, work.error, self.meta).items():
                self.shard.append(table, rows)
        self._ended(work.clip.clip_id, work.error, 0)

    def _ended(self, clip_id: str, error: str | None, frames: int) -> None:
        self.results.append((clip_id, error, frames))
        if self.on_clip:
            self.on_clip(clip_id, error, frames)


def stored_projection(catalog: Catalog, fs_id: str) -> ChannelProjection | None:
    with catalog.read() as con:
        stored = load_projection(con, fs_id)
    return ChannelProjection(*stored) if stored else None
