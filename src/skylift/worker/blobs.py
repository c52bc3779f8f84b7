"""Content-addressed files the worker needs (user source, `add_local_*` files), cached on disk.

Blobs are fetched once from the control plane (`blob.get`) and kept under
`<home>/blobs-cache/ab/abcdef…`; every later mount or layer that needs the same bytes links or
copies the cached file instead of asking again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol


class BlobSource(Protocol):
    """Where blobs come from: the control plane, or a dict in tests."""

    async def get(self, sha256: str) -> bytes: ...


class RpcBlobSource:
    def __init__(self, rpc: Any) -> None:
        self._rpc = rpc

    async def get(self, sha256: str) -> bytes:
        result = await self._rpc.call("blob.get", {"sha256": sha256})
        data: bytes = result["data"]
        return data


class DictBlobSource:
    """Blobs held in memory; the simple implementation beside the real one."""

    def __init__(self, blobs: dict[str, bytes] | None = None) -> None:
        self.blobs = dict(blobs or {})
        self.fetches = 0

    def add(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    async def get(self, sha256: str) -> bytes:
        self.fetches += 1
        try:
            return self.blobs[sha256]
        except KeyError:
            raise FileNotFoundError(f"no blob {sha256}") from None


class BlobCache:
    def __init__(self, root: Path, source: BlobSource) -> None:
        self.root = root
        self.source = source
        self._locks: dict[str, asyncio.Lock] = {}

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def ensure(self, sha256: str) -> Path:
        """The local path of the blob, fetching (and verifying) it first if needed."""
        path = self.path(sha256)
        if path.exists():
            return path
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            if path.exists():
                return path
            data = await self.source.get(sha256)
            actual = hashlib.sha256(data).hexdigest()
            if actual != sha256:
                raise ValueError(f"blob {sha256} arrived with content hash {actual}")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        self._locks.pop(sha256, None)
        return path

    async def materialize(self, files: list[dict[str, Any]], dest: Path) -> None:
        """Write `files` ([{path, sha256, mode}], paths relative to `dest`) under `dest`."""
        await asyncio.gather(*(self.ensure(f["sha256"]) for f in {f["sha256"]: f for f in files}.values()))
        for entry in files:
            rel = Path(entry["path"])
            if rel.is_absolute() or ".." in rel.parts:
                raise ValueError(f"file path {entry['path']!r} must be relative and stay inside its directory")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            # A copy, not a link: user code may write to its files, and the cache must stay intact.
            shutil.copyfile(self.path(entry["sha256"]), target)
            os.chmod(target, int(entry.get("mode") or 0o644) & 0o7777)
