"""The model store: head weights as files named by head and version, checked by SHA-256 on load."""
from __future__ import annotations

import os
from pathlib import Path

import torch

import models.heads  # noqa: F401  (every head registers its class)
from models.head_registry import head_from_payload
from pipeline.hashing import sha256_file


class WeightsMismatch(RuntimeError):
    pass


def default_store(db_path: str) -> Path:
    """$NEARMISS_MODEL_STORE, else a `model_store` folder beside the catalog file."""
    return Path(os.environ.get("NEARMISS_MODEL_STORE") or Path(db_path).expanduser().resolve().parent / "model_store")


def save_head(head, store: str | Path, name: str, version: int) -> tuple[Path, str]:
    """Write the head's weights to store/name/vVERSION.pt (atomically); returns (path, sha256)."""
    path = Path(store) / name / f"v{version}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format": 1, "name": name, "version": version, **head.payload()}, tmp)
    os.replace(tmp, path)
    return path, sha256_file(path)


def load_head(path: str | Path, sha256: str | None = None):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"head weights {path} are missing from the model store")
    if sha256 is not None and sha256_file(path) != sha256:
        raise WeightsMismatch(f"{path} does not match the SHA-256 registered for it; the file was changed")
    return head_from_payload(torch.load(path, map_location="cpu", weights_only=True))
