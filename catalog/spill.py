"""A clip's per-frame rows on local disk while it is featurized, so a long clip's rows never sit in memory.

Featurize hands over each window's finished frames; they are appended to two Parquet files (frame and
motion rows), and at the clip's end `store_spilled_clip` moves them into the catalog in the clip's one
transaction. A spill folder belongs to one process (its name starts with the PID); one whose process is
gone is removed by the next run.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.features import float_lists, frame_rows, motion_rows
from catalog.runs import pid_alive
from contracts.flow_stacks import PackedStacks


class ClipSpill:
    def __init__(self, folder: Path, clip_id: str, fs_id: str):
        self.clip_id, self.fs_id = clip_id, fs_id
        self.frames_path, self.motion_path = folder / f"{clip_id}.frames.parquet", folder / f"{clip_id}.motion.parquet"
        self._writers: dict[Path, pq.ParquetWriter] = {}
        self.n_frames = 0

    def add(self, start: int, times_s: np.ndarray, embeddings: np.ndarray, embclip: np.ndarray | None,
            motion, flow: PackedStacks | None = None, embedded_at: np.ndarray | None = None) -> None:
        """A window's rows from frame `start` on; embedded_at: which of its frames have embeddings (all: None)."""
        at = np.arange(len(times_s)) if embedded_at is None else np.asarray(embedded_at, int)
        if len(at):
            self._write(self.frames_path, frame_rows(self.clip_id, self.fs_id, start + at, times_s[at], embeddings,
                                                     embclip))
        self._write(self.motion_path, motion_rows(self.clip_id, self.fs_id, start, times_s, motion, flow))
        self.n_frames = max(self.n_frames, start + len(times_s))

    def _write(self, path: Path, table: pa.Table) -> None:
        if path not in self._writers:
            self._writers[path] = pq.ParquetWriter(path, table.schema)
        self._writers[path].write_table(table)

    def rows(self, object_summary: np.ndarray | None, batch: int = 1024) -> Iterator[tuple[str, pa.Table]]:
        """The spilled rows a batch at a time, by table, with the road-user summary joined onto the motion
        rows: what a worker appends to its shard."""
        self.close()
        for table, path in (("frame_features", self.frames_path), ("motion_features", self.motion_path)):
            for b in pq.ParquetFile(path).iter_batches(batch_size=batch):
                t = pa.Table.from_batches([b])
                if table == "motion_features":
                    at = t.column("frame_idx").to_numpy()
                    t = t.append_column("object_summary", float_lists(object_summary[at])
                                        if object_summary is not None else pa.nulls(len(at), pa.list_(pa.float32())))
                yield table, t

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def remove(self) -> None:
        """Discard the clip's rows. Closing may fail (a full disk): they are being thrown away anyway."""
        for writer in self._writers.values():
            try:
                writer.close()
            except OSError:
                writer.is_open = False   # else pyarrow retries at garbage collection and prints the error
        self._writers.clear()
        for path in (self.frames_path, self.motion_path):
            path.unlink(missing_ok=True)


class SpillFolder:
    """This process's spill folder (ROOT/PID-xxxx), removed when done."""

    @classmethod
    def beside(cls, db: str) -> "SpillFolder":
        """Beside the catalog (NAME.spill): the disk the catalog's rows are headed for anyway."""
        return cls(Path(db).expanduser().resolve().with_suffix(".spill"))

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        _sweep(root)
        self.path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        self._clips: list[ClipSpill] = []

    def clip(self, clip_id: str, fs_id: str) -> ClipSpill:
        spill = ClipSpill(self.path, clip_id, fs_id)
        self._clips.append(spill)
        return spill

    def remove(self) -> None:
        """Everything spilled here, including clips a failed batch left open."""
        for spill in self._clips:
            spill.remove()
        self._clips.clear()
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            self.path.parent.rmdir()   # only when no other process spills here
        except OSError:
            pass


def _sweep(root: Path) -> None:
    """Remove spill folders of processes that are gone (a killed run)."""
    for folder in root.iterdir():
        pid = folder.name.split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
