"""Content identity: SHA-256 of a file's bytes, streamed so huge files cost no memory."""
from __future__ import annotations

import hashlib
import os

_CHUNK = 4 << 20


def sha256_file(path: bytes | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def sha256_text(text: str | bytes) -> str:
    return hashlib.sha256(os.fsencode(text) if isinstance(text, str) else text).hexdigest()
