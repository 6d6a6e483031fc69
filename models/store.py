"""The model store: head weights as files named by head and version, checked by SHA-256 on load.

The registry of versions is the `models` table (catalog/heads.py); the registry of head kinds is
models/head_registry.py."""
from __future__ import annotations

import os
from pathlib import Path

import torch

import models.heads  # noqa: F401  (every head registers its class)
from models.head_registry import head_from_payload
from pipeline.hashing import sha256_file
from contracts.errors import WeightsMismatch, WeightsMissing
from contracts.settings import settings


def default_store(db_path: str) -> Path:
    """$NEARMISS_MODEL_STORE, else a `model_store` folder beside the catalog file."""
    return Path(settings().model_store or Path(db_path).expanduser().resolve().parent / "model_store")


def save_head(head, store: str | Path, name: str, version: int) -> tuple[Path, str]:
    """Write the head's weights to store/name/vVERSION.pt (atomically); returns (path, sha256).
    Record `path.relative_to(store)` in the catalog, so the store can move with it."""
    path = Path(store) / name / f"v{version}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format": 1, "name": name, "version": version, **head.payload()}, tmp)
    os.replace(tmp, path)
    return path, sha256_file(path)


def resolve_weights(weights_path: str | Path, store: str | Path | None) -> Path:
    """Where a head's weights are now. The catalog records them relative to the model store
    (NAME/vN.pt), so a catalog and its store can move together; an absolute path (a store given
    with --store) is used as it is. Catalogs from before kept a path relative to wherever the
    command ran: those are looked up as NAME/vN.pt in the store."""
    path = Path(weights_path)
    if path.is_absolute() and path.is_file():
        return path
    if store is not None:
        for candidate in (Path(store) / path, Path(store) / path.parent.name / path.name):
            if candidate.is_file():
                return candidate
    return path


def load_head(path: str | Path, sha256: str | None = None, store: str | Path | None = None):
    path = resolve_weights(path, store)
    if not path.is_file():
        where = f" (model store {store}: set NEARMISS_MODEL_STORE, or keep model_store/ beside the catalog)" \
            if store is not None else ""
        raise WeightsMissing(f"head weights {path.name} ({path}) are missing from the model store{where}")
    if sha256 is not None and sha256_file(path) != sha256:
        raise WeightsMismatch(f"{path} does not match the SHA-256 registered for it; the file was changed")
    return head_from_payload(torch.load(path, map_location="cpu", weights_only=True))
