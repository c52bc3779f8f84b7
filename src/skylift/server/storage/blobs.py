"""Content-addressed blobs (uploaded source files, local files of image layers).

A blob's name is the sha256 of its bytes, so the same file uploaded by many apps is stored once
and a client asks `blob.missing` before uploading. `put` verifies the hash, so a corrupt upload
never poisons the store, and writes atomically (temp file + rename), so a reader never sees half
a blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobHashMismatch(ValueError):
    pass


def is_sha256(value: str) -> bool:
    return bool(_SHA256.match(value))


class BlobStore(Protocol):
    def has(self, sha256: str) -> bool: ...
    def put(self, sha256: str, data: bytes) -> None: ...
    def get(self, sha256: str) -> bytes | None: ...


class FileBlobStore:
    """Blobs under `root/ab/abcdef…` (the first two hex digits fan out the directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"{sha256!r} is not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def put(self, sha256: str, data: bytes) -> None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise BlobHashMismatch(f"blob announced as sha256 {sha256} hashes to {actual}; upload it again")
        path = self._path(sha256)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, sha256: str) -> bytes | None:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError:
            return None


class MemoryBlobStore:
    """The same contract in memory, for tests and throwaway servers."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def has(self, sha256: str) -> bool:
        return sha256 in self._blobs

    def put(self, sha256: str, data: bytes) -> None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise BlobHashMismatch(f"blob announced as sha256 {sha256} hashes to {actual}; upload it again")
        self._blobs[sha256] = data

    def get(self, sha256: str) -> bytes | None:
        return self._blobs.get(sha256)
