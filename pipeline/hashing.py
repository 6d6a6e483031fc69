"""Content identity: SHA-256 of a file's bytes, streamed so huge files cost no memory."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache

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


def sha256_weights(path: str | os.PathLike) -> str:
    """sha256_file for a weights file that several identities name in one process (the feature set's, the
    engine export's key): read once while the file stays the same (inode, size, change times)."""
    st = os.stat(path)
    return _sha256_unchanged(os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@lru_cache(maxsize=16)
def _sha256_unchanged(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    return sha256_file(path)
