"""Mounts (user source, `add_local_*(copy=False)` files) made real as directories on the worker.

A mount list becomes one directory, `<home>/mounts/<hash of the list>/`, holding each mount at
`<dir>/<remote_path without its leading slash>/<path>`. The directory is content-addressed, so
every container of every function with the same source shares it, and it is built in a temporary
directory and renamed into place, so a half-written one is never seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._hashing import canonical
from .blobs import BlobCache

# Where Modal puts user source; in the process runtime this directory is the working directory
# and on PYTHONPATH, so `import my_module` finds the mounted file.
SOURCE_ROOT = "/root"


def mounts_key(mounts: list[dict[str, Any]]) -> str:
    normalized = sorted(
        ({"remote_path": m["remote_path"],
          "files": sorted(([f["path"], f["sha256"], int(f.get("mode") or 0o644)] for f in m.get("files") or []))}
         for m in mounts),
        key=lambda m: m["remote_path"])
    return hashlib.sha256(canonical(normalized)).hexdigest()[:32]


def host_path(root: Path, remote_path: str) -> Path:
    """Where a container path lives inside a materialised mount directory (or a layer's fs/)."""
    relative = remote_path.strip("/")
    if ".." in Path(relative).parts:
        raise ValueError(f"path {remote_path!r} must not contain '..'")
    return root / relative if relative else root


class MountStore:
    def __init__(self, root: Path, blobs: BlobCache) -> None:
        self.root = root
        self.blobs = blobs
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, mounts: list[dict[str, Any]]) -> Path | None:
        """The directory holding `mounts`, materialised if needed; None when there are none."""
        if not mounts:
            return None
        key = mounts_key(mounts)
        final = self.root / key
        if final.exists():
            return final
        async with self._locks.setdefault(key, asyncio.Lock()):
            if final.exists():
                return final
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{key}-"))
            try:
                for mount in mounts:
                    await self.blobs.materialize(mount.get("files") or [], host_path(tmp, mount["remote_path"]))
                tmp.chmod(0o755)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final


def source_dir(mount_root: Path | None, mounts: list[dict[str, Any]]) -> Path | None:
    """The materialised `/root` (user source) directory, when a mount puts anything there."""
    if mount_root is None:
        return None
    for mount in mounts:
        remote = "/" + mount["remote_path"].strip("/")
        if remote == SOURCE_ROOT or remote.startswith(SOURCE_ROOT + "/"):
            return host_path(mount_root, SOURCE_ROOT)
    return None
