"""The `volume.*` methods: a Volume is a versioned manifest over content-addressed blobs.

    volume.manifest {volume_id} -> {version, entries: [Entry]}
    volume.commit {volume_id, puts: [Entry], deletes: [path], force?: bool} -> {version}
    volume.listdir {volume_id, path, recursive?} -> {entries: [[path, type, size, mtime]]}
    volume.file {volume_id, path} -> {entry: Entry}
    volume.remove {volume_id, path, recursive?} -> {version}
    volume.copy {volume_id, srcs: [path], dst: path, recursive?} -> {version}
    volume.write_blocks {blocks: [bytes]} -> {hashes: [sha256]}   many small blobs in one round trip
    volume.read_blocks {hashes: [sha256]} -> {blocks: [bytes]}    (each call at most 64 MiB)

File contents are uploaded first (`blob.missing` + `blob.put`, one blob per 8 MiB block); a
commit names the blocks and is refused if any is missing, so a committed manifest never points at
nothing. Commits to one volume are applied one at a time, last write wins per path
(`_volumes.manifest.apply_commit`); `force=False` (batch_upload) refuses to overwrite. Each
commit bumps the version and is one SQLite transaction. Manifests are cached in memory after the
first read.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import time
from typing import Any

from ..._protocol.rpc import ErrorCode, RpcError
from ..._protocol.rpc_server import Session
from ..._volumes.manifest import (
    DIRECTORY,
    FILE,
    Entry,
    Manifest,
    PathError,
    apply_commit,
    is_under,
    list_directory,
    normalize_path,
)
from ..auth import Routes
from ..params import Params, invalid, not_found
from .blobs import BlobStore, is_sha256
from .object_store import ObjectRecord
from .objects import Objects

MAX_COMMIT_ENTRIES = 500_000
MAX_BLOCKS_BYTES = 64 * 1024 * 1024
MAX_BLOCKS = 10_000


class _Volume:
    def __init__(self, version: int, entries: list[Entry]) -> None:
        self.version = version
        self.manifest: Manifest = {e.path: e for e in entries}
        self.lock = asyncio.Lock()
        self._wire: list[list[Any]] | None = None

    def wire(self) -> list[list[Any]]:
        if self._wire is None:
            self._wire = [e.to_wire() for e in self.manifest.values()]
        return self._wire

    def replace(self, version: int, manifest: Manifest) -> None:
        self.version, self.manifest, self._wire = version, manifest, None


def _path(method: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise invalid(method, "paths must be strings")
    try:
        return normalize_path(raw)
    except PathError as exc:
        raise invalid(method, str(exc)) from None


class VolumeApi:
    def __init__(self, objects: Objects, blobs: BlobStore) -> None:
        self.objects = objects
        self.store = objects.store
        self.blobs = blobs
        self._volumes: dict[str, _Volume] = {}
        objects.on_delete["volume"] = self._forget

    def _forget(self, record: ObjectRecord) -> None:
        self._volumes.pop(record.object_id, None)

    def routes(self) -> Routes:
        return {
            "volume.manifest": self.manifest,
            "volume.commit": self.commit,
            "volume.listdir": self.listdir,
            "volume.file": self.file,
            "volume.remove": self.remove,
            "volume.copy": self.copy,
            "volume.write_blocks": self.write_blocks,
            "volume.read_blocks": self.read_blocks,
        }

    async def _volume(self, p: Params) -> tuple[ObjectRecord, _Volume]:
        record = await self.objects.resolve(p.method, p.text("volume_id"), "volume")
        volume = self._volumes.get(record.object_id)
        if volume is None:
            version, entries = await self.objects.run(self.store.volume_load, record.object_id)
            volume = self._volumes.setdefault(record.object_id, _Volume(version, entries))
        return record, volume

    async def _apply(self, record: ObjectRecord, volume: _Volume, puts: list[Entry], deletes: list[str]) -> int:
        """Apply a change under the volume's lock (the caller holds it) and persist it."""
        result = apply_commit(volume.manifest, puts, deletes, int(time.time()))
        version = volume.version + 1
        await self.objects.run(self.store.volume_commit, record.object_id, version, result.written, result.removed)
        volume.replace(version, result.manifest)
        return version

    async def manifest(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        _, volume = await self._volume(Params("volume.manifest", raw))
        return {"version": volume.version, "entries": volume.wire()}

    async def commit(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("volume.commit", raw)
        record, volume = await self._volume(p)
        raw_puts, raw_deletes = p.items("puts", []), p.items("deletes", [])
        if len(raw_puts) + len(raw_deletes) > MAX_COMMIT_ENTRIES:
            raise invalid(p.method, f"at most {MAX_COMMIT_ENTRIES} changes per commit")
        try:
            puts = [Entry.from_wire(e) for e in raw_puts]
        except (ValueError, PathError) as exc:
            raise invalid(p.method, str(exc)) from None
        deletes = [_path(p.method, d) for d in raw_deletes]
        blocks = {b for e in puts for b in e.blocks}
        bad = [b for b in blocks if not is_sha256(b)]
        if bad:
            raise invalid(p.method, f"{bad[0]!r} is not a sha256 hex digest")
        missing = await asyncio.to_thread(lambda: [b for b in blocks if not self.blobs.has(b)])
        if missing:
            raise invalid(p.method, f"{len(missing)} block(s) are not uploaded (e.g. {missing[0]}); "
                                    "upload them with blob.put before committing")
        async with volume.lock:
            if not p.flag("force", True):
                existing = [e.path for e in puts if e.type == FILE and e.path in volume.manifest]
                if existing:
                    raise RpcError(ErrorCode.CONFLICT, f"{existing[0]!r} already exists in the volume; "
                                                       "use force=True (`--force`) to overwrite")
            version = await self._apply(record, volume, puts, deletes)
        return {"version": version}

    async def listdir(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("volume.listdir", raw)
        record, volume = await self._volume(p)
        path = _path(p.method, p.text("path", "/"))
        entries = list_directory(volume.manifest, path, p.flag("recursive"))
        if entries is None:
            raise not_found(f"no file or directory {'/' + path!r} in Volume {record.name or record.object_id!r}")
        return {"entries": [[e.path, e.type, e.size, e.mtime] for e in entries]}

    async def file(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("volume.file", raw)
        record, volume = await self._volume(p)
        path = _path(p.method, p.text("path"))
        entry = volume.manifest.get(path)
        if entry is None:
            raise not_found(f"no file {'/' + path!r} in Volume {record.name or record.object_id!r}")
        return {"entry": entry.to_wire()}

    async def remove(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("volume.remove", raw)
        record, volume = await self._volume(p)
        path = _path(p.method, p.text("path"))
        if not path:
            raise invalid(p.method, "refusing to remove the volume's root; delete the volume instead")
        async with volume.lock:
            entry = volume.manifest.get(path)
            if entry is None:
                raise not_found(f"no file or directory {'/' + path!r} in Volume {record.name or record.object_id!r}")
            doomed = [path]
            if entry.type == DIRECTORY:
                doomed += [q for q in volume.manifest if q.startswith(path + "/")]
                if len(doomed) > 1 and not p.flag("recursive"):
                    raise invalid(p.method, f"{'/' + path!r} is a directory that is not empty; use recursive=True "
                                            "(`-r`)")
            return {"version": await self._apply(record, volume, [], doomed)}

    async def copy(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("volume.copy", raw)
        record, volume = await self._volume(p)
        srcs = [_path(p.method, s) for s in p.items("srcs")]
        dst = _path(p.method, p.text("dst"))
        recursive = p.flag("recursive")
        if not srcs:
            raise invalid(p.method, "give at least one source path")
        async with volume.lock:
            manifest = volume.manifest
            dst_entry = manifest.get(dst)
            into_dir = (len(srcs) > 1 or dst == "" or str(raw.get("dst", "")).endswith("/")
                        or (dst_entry is not None and dst_entry.type == DIRECTORY))
            puts: list[Entry] = []
            for src in srcs:
                entry = manifest.get(src)
                if entry is None:
                    raise not_found(f"no file or directory {'/' + src!r} in Volume "
                                    f"{record.name or record.object_id!r}")
                target = posixpath.join(dst, posixpath.basename(src)) if into_dir else dst
                if is_under(target, src) and entry.type == DIRECTORY:
                    raise invalid(p.method, f"can't copy {'/' + src!r} into itself")
                if entry.type == DIRECTORY and not recursive:
                    raise invalid(p.method, f"{'/' + src!r} is a directory; use recursive=True (`-r`)")
                puts.append(entry._replace(path=target))
                if entry.type == DIRECTORY:
                    puts += [e._replace(path=target + q[len(src):]) for q, e in manifest.items()
                             if q.startswith(src + "/")]
            return {"version": await self._apply(record, volume, puts, [])}

    async def write_blocks(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("volume.write_blocks", raw)
        blocks = p.items("blocks")
        if len(blocks) > MAX_BLOCKS or not all(isinstance(b, bytes) for b in blocks):
            raise invalid(p.method, f"blocks must be a list of at most {MAX_BLOCKS} byte strings")
        if sum(len(b) for b in blocks) > MAX_BLOCKS_BYTES:
            raise invalid(p.method, f"at most {MAX_BLOCKS_BYTES >> 20} MiB per call; send large blocks with blob.put")

        def store() -> list[str]:
            hashes = []
            for block in blocks:
                digest = hashlib.sha256(block).hexdigest()
                if not self.blobs.has(digest):
                    self.blobs.put(digest, block)
                hashes.append(digest)
            return hashes

        return {"hashes": await asyncio.to_thread(store)}

    async def read_blocks(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("volume.read_blocks", raw)
        hashes = p.strings("hashes")
        if len(hashes) > MAX_BLOCKS or not all(is_sha256(h) for h in hashes):
            raise invalid(p.method, f"hashes must be at most {MAX_BLOCKS} sha256 hex digests")

        def load() -> list[bytes]:
            out: list[bytes] = []
            total = 0
            for digest in hashes:
                data = self.blobs.get(digest)
                if data is None:
                    raise not_found(f"no block {digest} in the blob store")
                total += len(data)
                if total > MAX_BLOCKS_BYTES and out:
                    break  # the caller asks again for the rest
                out.append(data)
            return out

        return {"blocks": await asyncio.to_thread(load)}
