"""How a step's units of work run: here, in this process (the CLI), or as Prefect tasks (the flows).

A step is a plain function over a catalog; it hands each unit (a batch of files, a chunk of clips) to
its executor. `@unit` declares a unit's retry policy once, beside the function, and the Prefect
executor makes a task of it only when asked, so the CLI never imports Prefect. Spreading featurize
over Dask workers is a third way, in steps/featurize_cluster.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol


@dataclass(frozen=True)
class UnitPolicy:
    name: str                     # the Prefect task's name
    retries: int = 0              # as Prefect tasks: a transient failure (a locked catalog) is tried again
    retry_delay_s: float = 0.0


def unit(name: str, retries: int = 0, retry_delay_s: float = 0.0):
    """Mark a function as a unit of work with its policy (used when it runs as a Prefect task)."""
    def mark(fn: Callable) -> Callable:
        fn.policy = UnitPolicy(name, retries, retry_delay_s)
        return fn
    return mark


class Executor(Protocol):
    def run(self, fn: Callable, *args, **kwargs) -> Any: ...


class InProcess:
    """Each unit a plain call: no server, no task records (the CLI's default)."""

    def run(self, fn: Callable, *args, **kwargs) -> Any:
        return fn(*args, **kwargs)


class PrefectTasks:
    """Each unit a Prefect task run of the current flow run (retries and records by Prefect)."""

    def __init__(self):
        self._tasks: dict[Callable, Any] = {}

    def task(self, fn: Callable):
        from prefect import task
        from prefect.cache_policies import NO_CACHE

        if fn not in self._tasks:
            p: UnitPolicy = getattr(fn, "policy", UnitPolicy(fn.__name__.replace("_", "-")))
            self._tasks[fn] = task(fn, name=p.name, cache_policy=NO_CACHE, retries=p.retries,
                                   retry_delay_seconds=p.retry_delay_s)
        return self._tasks[fn]

    def run(self, fn: Callable, *args, **kwargs) -> Any:
        return self.task(fn)(*args, **kwargs)
