"""A head's per-clip work over processes: re-scoring a fleet's catalog is per-clip Python and numpy, which one
process runs on one core.

joblib's loky pool (a dependency of scikit-learn, pinned) keeps its workers between calls, so a chunk of clips
after the first pays no start-up; clips go out in contiguous runs and come back in order. Below `min_clips`, in a
daemonic process (a Dask worker may not start children) or with one worker, the clips run here. Pure compute.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Callable, Sequence

from contracts.settings import settings


def _run(fn: Callable, items: Sequence[tuple]) -> list:
    return [fn(*item) for item in items]


def workers() -> int:
    """Processes for a head's per-clip work: NEARMISS_SCORE_WORKERS, or one per core."""
    return settings().score_workers or os.cpu_count() or 1


def map_clips(fn: Callable, items: Sequence[tuple], min_clips: int = 256) -> list:
    """[fn(*item) for item in items], spread over processes when there are enough clips to repay them."""
    n = min(workers(), max(1, len(items) // max(min_clips // 4, 1)))
    if n <= 1 or len(items) < min_clips or multiprocessing.current_process().daemon:
        return _run(fn, items)
    from joblib import Parallel, delayed

    runs = [items[k * len(items) // n:(k + 1) * len(items) // n] for k in range(n)]
    parts = Parallel(n_jobs=n, backend="loky")(delayed(_run)(fn, run) for run in runs)
    return [out for part in parts for out in part]
