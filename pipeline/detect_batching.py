"""One detector network shared by the clip threads of a featurize batch: the frames that reach it while it is busy
run together, as one batch across clips.

Each clip's thread asks for its own frames (a decode window's base frames, then its windows' frames), and an
engine runs one call at a time (an OpenVINO request has one caller, a GPU one stream). So only the network's step
is shared, grouped as a database groups commits: a thread that finds the network idle runs it on its own inputs
and on every thread's inputs queued meanwhile, and the threads queued behind a running batch form the next. Each
thread prepares its frames (resizing) and reads its rows back into road users (parse, non-maximum suppression) on
its own, while the network runs another batch. No timer: a lone clip waits for no one, and the batches grow with
the clips in flight. A frame's rows do not depend on its batch-mates (tests/test_detect_batching.py checks the
real network's), so the detections are those of each clip alone. Pure compute.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from pipeline.detections import BatchingDetector, Detections, Detector


@dataclass(eq=False)
class _Call:
    inputs: np.ndarray
    rows: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class BatchStats:
    """What the grouping did, for benchmarks: network calls asked for, batches run, frames inferred."""
    calls: int = 0
    batches: int = 0
    frames: int = 0


@dataclass(eq=False)
class SharedDetector:
    """A detector whose threads' network calls run as one batch; its name, identity and the rest are the inner
    detector's."""
    inner: BatchingDetector
    stats: BatchStats = field(default_factory=BatchStats)
    _queued: list = field(default_factory=list)
    _busy: bool = False
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def __getattr__(self, name: str):   # name, identity, engine, batch_size: the inner detector's
        if name.startswith("__") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def detect(self, frames: np.ndarray) -> list[Detections]:
        out: list[Detections] = []
        size = self.inner.batch_size
        for start in range(0, len(frames), size):   # a chunk at a time, as the detector alone: memory stays bounded
            out += [self.inner.parse(r) for r in self._infer(self.inner.inputs(frames[start:start + size]))]
        return out

    def _infer(self, inputs: np.ndarray) -> np.ndarray:
        call = _Call(inputs)
        with self._cond:
            self._queued.append(call)
            self.stats.calls += 1
            while not call.done and self._busy:
                self._cond.wait()
            if not call.done:   # idle, and this call still queued: run it with every call queued beside it
                batch, self._queued, self._busy = self._queued, [], True
        if not call.done:
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    for c in batch:
                        c.done = True
                    self._cond.notify_all()
        if call.error is not None:
            raise call.error
        return call.rows

    def _run(self, batch: list[_Call]) -> None:
        """Each group of same-shaped inputs in one network call; where a group fails, its calls run alone, so that
        an error stays with the clip whose frames raised it."""
        groups: dict[tuple, list[_Call]] = {}
        for c in batch:
            groups.setdefault(c.inputs.shape[1:], []).append(c)
        for calls in groups.values():
            try:
                rows = self.inner.infer(calls[0].inputs if len(calls) == 1
                                        else np.concatenate([c.inputs for c in calls]))
                self.stats.batches += 1
                self.stats.frames += len(rows)
                off = 0
                for c in calls:
                    c.rows, off = rows[off:off + len(c.inputs)], off + len(c.inputs)
            except BaseException as exc:
                if len(calls) == 1:
                    calls[0].error = exc
                    continue
                for c in calls:
                    try:
                        c.rows = self.inner.infer(c.inputs)
                    except BaseException as own:
                        c.error = own


def shared(detector: Detector) -> Detector:
    """The detector, its network calls grouped across clips where one network serves every thread (Darknet through
    an engine); one that keeps a network per thread (OpenCV DNN) or takes a frame at a time (YOLOX's export, ncnn)
    is returned as it is."""
    return SharedDetector(detector) if getattr(detector, "batches", False) else detector
