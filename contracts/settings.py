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
| CI | unset | set: no progress bars |
"""
from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEARMISS_", extra="ignore")

    db: str = "nearmiss.duckdb"
    model_store: str | None = None
    lock_timeout_s: float = 600.0
    memory_budget_gb: float = 8.0
    detector: str | None = None
    query_timeout_s: float = 60.0
    claim_lease_s: float = 300.0
    engine_cache: str | None = None

    @property
    def engine_cache_dir(self) -> str:
        if self.engine_cache:
            return self.engine_cache
        return f"{self.model_store}/engines" if self.model_store else "~/.cache/nearmiss/engines"
    ci: bool = Field(False, validation_alias=AliasChoices("CI"))


def settings() -> Settings:
    return Settings()
