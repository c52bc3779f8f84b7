"""Volumes and bucket mounts of a container, made real on the worker before it starts.

For each volume of the TaskSpec, the worker fetches the committed manifest (`volume.manifest`),
brings missing blocks into its blob cache (many per `volume.read_blocks` call) and writes the
files into `tasks/<id>/volumes/<n>/`: reflinks of the cached blobs where the filesystem can,
copies elsewhere — never hard links, since user code may rewrite a file in place. It records
what it wrote (the base) in `tasks/<id>/volume-meta/<n>.base` for the container's commits, and
binds the directory at the mount path (`ContainerSpec.binds`; the process runtime honours them
with a private mount namespace, see `process_binds`). Bucket mounts are synchronised
(`bucket_sync`). `SKYLIFT_VOLUMES` tells the container where everything is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .._volumes.files import clone_file, finish_file, make_directory, write_base
from .._volumes.manifest import DIRECTORY, Base, Entry
from .._volumes.transfer import download_blocks
from .blobs import BlobCache
from .bucket_sync import BucketMounts, BucketSync
from .runtime import ContainerSpec

ENV_VOLUMES = "SKYLIFT_VOLUMES"
# Where the container runtime shows the base files inside a container.
META_IN_CONTAINER = "/run/skylift-volumes"


def _store(cache: BlobCache, digest: str, data: bytes) -> None:
    path = cache.path(digest)
    if path.exists():
        return
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"block {digest} arrived with different content")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)


def _write_tree(cache: BlobCache, entries: list[Entry], root: Path) -> dict[str, Base]:
    """Write every entry under `root` from the cache; the base to remember."""
    root.mkdir(parents=True, exist_ok=True)
    base: dict[str, Base] = {}
    for entry in sorted(entries, key=lambda e: (e.type != DIRECTORY, e.path)):
        if entry.type == DIRECTORY:
            make_directory(root, entry)
            base[entry.path] = Base(entry, entry.mtime * 1_000_000_000)
            continue
        target = root / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if len(entry.blocks) == 1:
            clone_file(cache.path(entry.blocks[0]), target)
        else:
            with open(target, "wb") as f:
                for digest in entry.blocks:
                    with open(cache.path(digest), "rb") as block:
                        f.write(block.read())
        base[entry.path] = Base(entry, finish_file(target, entry))
    return base


async def materialize(rpc: Any, cache: BlobCache, volume_id: str, root: Path, base_file: Path) -> int:
    """Write the volume's committed state under `root`; returns the number of entries."""
    got = await rpc.call("volume.manifest", {"volume_id": volume_id})
    entries = [Entry.from_wire(raw) for raw in got["entries"]]
    sizes = {d: min(e.size, 8 * 1024 * 1024) for e in entries for d in e.blocks}
    missing = [d for d in sizes if not cache.path(d).exists()]
    async for digest, data in download_blocks(rpc, missing, sizes):
        await asyncio.to_thread(_store, cache, digest, data)
    base = await asyncio.to_thread(_write_tree, cache, entries, root)
    base_file.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(write_base, base_file, int(got["version"]), base)
    return len(entries)


class StorageMounts:
    """Per worker: attach a task's volumes and buckets before it starts, finish them after."""

    def __init__(self, rpc: Any, cache: BlobCache, note: Any) -> None:
        self.rpc = rpc
        self.cache = cache
        self._note = note  # (task_id, text): a system line in the app's logs
        self._buckets: dict[str, BucketMounts] = {}

    async def attach(self, task: dict[str, Any], spec: ContainerSpec, scratch: Path, runtime_name: str) -> None:
        volumes = task.get("volumes") or []
        buckets = task.get("bucket_mounts") or []
        if not volumes and not buckets:
            return
        task_id = task["task_id"]
        in_container = runtime_name == "container"
        described = []
        meta = scratch / "volume-meta"
        for i, volume in enumerate(volumes):
            host_dir = scratch / "volumes" / str(i)
            base_file = meta / f"{i}.base"
            count = await materialize(self.rpc, self.cache, volume["volume_id"], host_dir, base_file)
            read_only = bool(volume.get("read_only"))
            spec.binds.append((host_dir, volume["mount_path"], read_only))
            described.append({"mount_path": volume["mount_path"], "volume_id": volume["volume_id"],
                              "read_only": read_only,
                              "host_dir": "" if in_container else str(host_dir),
                              "base": f"{META_IN_CONTAINER}/{i}.base" if in_container else str(base_file)})
            self._note(task_id, f"volume {volume['volume_id']} mounted at {volume['mount_path']} ({count} entries)")
        if volumes and in_container:
            spec.binds.append((meta, META_IN_CONTAINER, False))
        if described:
            spec.env[ENV_VOLUMES] = json.dumps(described)
        syncs = []
        for i, bucket in enumerate(buckets):
            host_dir = scratch / "buckets" / str(i)
            syncs.append(BucketSync.from_spec(bucket, host_dir))
            spec.binds.append((host_dir, bucket["mount_path"], bool(bucket.get("read_only"))))
        if syncs:
            mounts = BucketMounts(syncs, lambda text: self._note(task_id, text))
            await mounts.start()
            self._buckets[task_id] = mounts

    async def detach(self, task_id: str) -> None:
        """After the container exited (any exit): the last bucket sync."""
        mounts = self._buckets.pop(task_id, None)
        if mounts is not None:
            with contextlib.suppress(Exception):
                await mounts.finish()
