"""Every environment setting nearmiss reads, in one place (read when asked, so tests can set them).

| variable | default | what |
| --- | --- | --- |
| NEARMISS_DB | ./nearmiss.duckdb | the catalog (the CLI's --db wins) |
| NEARMISS_MODEL_STORE | model_store/ beside the catalog | head weights |
| NEARMISS_LOCK_TIMEOUT_S | 600 | how long a writer waits for another process's lock on the catalog |
| NEARMISS_MEMORY_BUDGET_GB | 8 | decoded frames one window of a clip may hold; a clip that needs more fails, naming why |
| NEARMISS_QUERY_TIMEOUT_S | 60 | a `query` (or `--where` read) running longer is interrupted: readers hold the catalog's file lock, so this bounds how long they make a writer wait |
| NEARMISS_CLAIM_LEASE_S | 300 | how long a featurize run's claim on a clip holds without renewal (it renews every third of it while it works); another host's dead run's clips wait this long, this host's are freed at once |
| NEARMISS_ENGINE_CACHE | NEARMISS_MODEL_STORE/engines, else ~/.cache/nearmiss/engines | networks exported for ONNX Runtime / OpenVINO, keyed by weights, shape and engine version (any catalog may share them: they depend on the weights only) |
| NEARMISS_DETECTOR | unset | the detector featurize uses when none is named (e.g. darknet:/models/yolo_fastest) |
| NEARMISS_SCORE_WORKERS | 0: one per core | processes that compute the conflict head's cues when a chunk holds enough clips (1: in the scoring process) |
| CI | unset | set: no progress bars |
"""
from __future__ import annotations

import dataclasses
import os
import typing

_TRUE = {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Read from the environment (NEARMISS_<NAME>, and CI) each time settings() is called.

    A plain dataclass, not pydantic-settings: importing that costs about 0.3 s, paid by every command,
    and the CLI answers a query in about half a second (bench/cli_latency.py)."""
    db: str = "nearmiss.duckdb"
    model_store: str | None = None
    lock_timeout_s: float = 600.0
    memory_budget_gb: float = 8.0
    detector: str | None = None
    query_timeout_s: float = 60.0
    claim_lease_s: float = 300.0
    engine_cache: str | None = None
    score_workers: int = 0
    ci: bool = False                  # from CI, the variable CI services set

    @property
    def engine_cache_dir(self) -> str:
        if self.engine_cache:
            return self.engine_cache
        return f"{self.model_store}/engines" if self.model_store else "~/.cache/nearmiss/engines"


def _parse(name: str, kind, text: str):
    base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
    try:
        if base is bool:
            return text.strip().lower() in _TRUE
        return base(text)
    except ValueError:
        raise ValueError(f"setting {name}={text!r} is not a {base.__name__}") from None


def settings() -> Settings:
    hints = typing.get_type_hints(Settings)
    values = {}
    for f in dataclasses.fields(Settings):
        var = "CI" if f.name == "ci" else f"NEARMISS_{f.name.upper()}"
        if (text := os.environ.get(var)) is not None:
            values[f.name] = _parse(var, hints[f.name], text)
    return Settings(**values)
