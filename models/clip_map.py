"""A head's per-clip work in chunks and over processes: re-scoring a fleet's catalog is per-clip Python and numpy,
which one process runs on one core, and numpy's overhead per call is most of it for a short clip.

So the clips go in chunks (a chunk's clips batched into the same numpy calls by the head), and the chunks over
processes: joblib's loky pool (a dependency of scikit-learn, pinned) keeps its workers between calls, so a call
after the first pays no start-up; clips go out in contiguous runs and come back in order. Below `min_clips`, in a
daemonic process (a Dask worker may not start children) or with one worker, the clips run here. Pure compute.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
from typing import Callable, Sequence

from contracts.settings import settings


def workers() -> int:
    """Processes for a head's per-clip work: NEARMISS_SCORE_WORKERS, or one per core."""
    return settings().score_workers or os.cpu_count() or 1


def chunked(items: Sequence, weight: Callable[[object], float], budget: float) -> list[list]:
    """Contiguous chunks of items whose weights add up to at most `budget` (an item heavier than that alone)."""
    chunks, current, total = [], [], 0.0
    for item in items:
        w = weight(item)
        if current and total + w > budget:
            chunks.append(current)
            current, total = [], 0.0
        current.append(item)
        total += w
    return chunks + [current] if current else chunks


def _run(fn: Callable, chunks: list[list]) -> list:
    return [out for chunk in chunks for out in fn(chunk)]


def _run_packed(fn: Callable, payload, unpack: Callable, sizes: list[int]) -> list:
    items = unpack(payload)
    bounds = [0, *itertools.accumulate(sizes)]
    return _run(fn, [items[a:b] for a, b in zip(bounds, bounds[1:])])


def map_chunks(fn: Callable[[list], list], items: Sequence, weight: Callable[[object], float] = lambda _: 1.0,
               budget: float = 64, min_clips: int = 256, pack: Callable | None = None,
               unpack: Callable | None = None) -> list:
    """fn over chunks of the items (fn(chunk) -> one result per item, in order), the results in the items' order;
    spread over processes when there are enough items to repay them. pack(items) -> payload and unpack(payload)
    -> items: how a run of items travels to a process (a few long arrays pickle far faster than many small ones)."""
    n = min(workers(), max(1, len(items) // max(min_clips // 4, 1)))
    if n <= 1 or len(items) < min_clips or multiprocessing.current_process().daemon:
        return _run(fn, chunked(items, weight, budget))
    from joblib import Parallel, delayed

    runs = [items[k * len(items) // n:(k + 1) * len(items) // n] for k in range(n)]
    pack, unpack = pack or (lambda run: run), unpack or (lambda payload: payload)
    parts = Parallel(n_jobs=n, backend="loky")(
        delayed(_run_packed)(fn, pack(run), unpack, [len(c) for c in chunked(run, weight, budget)]) for run in runs)
    return [out for part in parts for out in part]
