"""CloudBucketMount without FUSE: a bucket prefix synchronised with a container's directory.

    sync_in    before the container starts: every object under the prefix is downloaded
    sync_out   while it runs (every SYNC_INTERVAL, files untouched for SETTLE_SECONDS) and once
               more after it exits (any exit): new and changed files are uploaded, files deleted
               in the container are deleted from the bucket. Never with read_only.

Consistency, honestly: the container sees the bucket as it was when it started (objects written
by others later are not seen); its writes reach the bucket within a few seconds of the file
being left alone, and all of them when it exits; two containers writing the same key: the last
upload wins. Objects that changed in the bucket meanwhile are overwritten only if the container
changed the same file. Large objects are uploaded in one PUT (S3 caps those at 5 GiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._volumes.files import scan
from .._volumes.manifest import FILE
from .s3 import Credentials, S3Client, S3Error, credentials_from_env, region_for

log = logging.getLogger("skylift.worker")

SYNC_INTERVAL = 5.0
SETTLE_SECONDS = 1.0
THREADS = 8


@dataclass
class _Known:
    size: int
    mtime_ns: int


@dataclass
class BucketSync:
    client: S3Client
    prefix: str
    root: Path
    read_only: bool
    known: dict[str, _Known] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # the periodic and the final sync

    @classmethod
    def from_spec(cls, spec: dict[str, Any], root: Path) -> BucketSync:
        env = {str(k): str(v) for k, v in (spec.get("credentials") or {}).items()}
        credentials: Credentials | None = credentials_from_env(env)
        endpoint = spec.get("endpoint_url")
        client = S3Client(spec["bucket_name"], endpoint_url=endpoint, credentials=credentials,
                          region=region_for(endpoint, env), force_path_style=bool(spec.get("force_path_style")),
                          requester_pays=bool(spec.get("requester_pays")))
        return cls(client, spec.get("key_prefix") or "", root, bool(spec.get("read_only")))

    def _stat(self, rel: str) -> _Known:
        st = (self.root / rel).stat()
        return _Known(st.st_size, st.st_mtime_ns)

    def sync_in(self) -> int:
        """Download everything under the prefix; returns the number of objects."""
        self.root.mkdir(parents=True, exist_ok=True)
        objects = [o for o in self.client.list(self.prefix) if o.key != self.prefix]

        def fetch(key: str) -> None:
            rel = key[len(self.prefix):]
            target = self.root / rel
            if ".." in Path(rel).parts or rel.startswith("/"):
                log.warning("skipping bucket object %r: its key leaves the mount", key)
                return
            if key.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.get(key, target)
            self.known[rel] = self._stat(rel)

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(fetch, [o.key for o in objects]))
        return len(objects)

    def sync_out(self, *, final: bool) -> tuple[int, int]:
        """Upload changes and delete removed files; returns (uploaded, deleted)."""
        if self.read_only:
            return 0, 0
        with self.lock:
            return self._sync_out(final)

    def _sync_out(self, final: bool) -> tuple[int, int]:
        now = time.time_ns()
        files = {p: s for p, s in scan(self.root).items() if s.type == FILE}
        changed = [p for p, s in files.items()
                   if (p not in self.known or self.known[p].size != s.size or self.known[p].mtime_ns != s.mtime_ns)
                   and (final or now - s.mtime_ns > SETTLE_SECONDS * 1e9)]
        gone = [p for p in self.known if p not in files]

        def upload(rel: str) -> None:
            before = self._stat(rel)
            self.client.put(self.prefix + rel, self.root / rel)
            self.known[rel] = before  # a write during the upload shows as a change next time

        def delete(rel: str) -> None:
            with contextlib.suppress(S3Error):
                self.client.delete(self.prefix + rel)
            self.known.pop(rel, None)

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(upload, changed))
            list(pool.map(delete, gone))
        return len(changed), len(gone)


class BucketMounts:
    """The bucket mounts of one container: sync in, keep syncing out, sync out at the end."""

    def __init__(self, syncs: list[BucketSync], note: Any) -> None:
        self.syncs = syncs
        self._note = note
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for sync in self.syncs:
            count = await asyncio.to_thread(sync.sync_in)
            self._note(f"bucket {sync.client.bucket}/{sync.prefix}: {count} object(s) downloaded")
        if any(not s.read_only for s in self.syncs):
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            for sync in self.syncs:
                try:
                    await asyncio.to_thread(sync.sync_out, final=False)
                except Exception as exc:
                    self._note(f"bucket {sync.client.bucket}: syncing out failed (retrying): {exc}")

    async def finish(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for sync in self.syncs:
            try:
                uploaded, deleted = await asyncio.to_thread(sync.sync_out, final=True)
                if uploaded or deleted:
                    self._note(f"bucket {sync.client.bucket}: {uploaded} file(s) uploaded, {deleted} deleted on exit")
            except Exception as exc:
                self._note(f"bucket {sync.client.bucket}: the final sync failed, changes are lost: {exc}")
