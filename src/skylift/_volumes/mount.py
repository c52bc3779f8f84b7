"""Volumes mounted in this container: `commit()` and `reload()`, and the commit at exit.

The worker materialises each volume's last committed state into a directory before the container
starts and describes it in `SKYLIFT_VOLUMES` (JSON: mount path, volume id, the directory as this
process sees it, the host directory, the base file). Then, as in Modal:

* `commit()` diffs the directory against its base (stat first; only files whose size or mtime
  changed are hashed), uploads new blocks, and sends the changed paths: last write wins per file,
  and files other containers committed meanwhile are kept;
* `reload()` brings in others' commits. It refuses ("volume busy") while this process has files
  open under the mount; files changed here and not committed yet are kept, to be committed later;
* a container that exits normally commits every mounted volume.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exception import InvalidError
from . import files
from .manifest import (
    BLOCK_SIZE,
    DIRECTORY,
    FILE,
    UNKNOWN_MTIME,
    Base,
    Entry,
    plan_commit,
    plan_reload,
    trusted_mtime,
)
from .transfer import BlockSource, download_blocks, upload_blocks

ENV_VOLUMES = "SKYLIFT_VOLUMES"
KEEP_FOR_UPLOAD = 1024 * 1024  # files this small are read once, for hashing and upload


@dataclass
class MountedVolume:
    mount_path: str
    volume_id: str
    dir: Path
    base_file: Path
    version: int = 0
    base: dict[str, Base] = field(default_factory=dict)
    loaded: bool = False
    lock: asyncio.Lock | None = None
    read_only: bool = False  # Volume.read_only(): bound read-only, never committed

    def load(self) -> None:
        if not self.loaded:
            self.version, self.base = files.read_base(self.base_file)
            self.loaded = True

    def save(self) -> None:
        files.write_base(self.base_file, self.version, self.base)


_mounts: list[MountedVolume] | None = None


def _resolve_dir(spec: dict[str, Any]) -> Path:
    """The mount path if this process sees the volume there (a bind or symlink), else the host dir."""
    seen, host = Path(spec["mount_path"]), Path(spec.get("host_dir") or spec["mount_path"])
    try:
        if seen.is_dir() and (not host.exists() or os.path.samefile(seen, host)):
            return seen
    except OSError:
        pass
    return host


def mounted() -> list[MountedVolume]:
    global _mounts
    if _mounts is None:
        raw = os.environ.get(ENV_VOLUMES)
        specs = json.loads(raw) if raw else []
        _mounts = [MountedVolume(s["mount_path"], s["volume_id"], _resolve_dir(s), Path(s["base"]),
                                 read_only=bool(s.get("read_only"))) for s in specs]
    return _mounts


def find(volume_id: str) -> MountedVolume:
    for mount in mounted():
        if mount.volume_id == volume_id:
            return mount
    if not os.environ.get("SKYLIFT_TASK_ID"):
        raise InvalidError("Volume.commit() and reload() work inside a container that mounts the volume; from "
                           "here, use batch_upload(), remove_file() and copy_files(), which commit at once")
    raise InvalidError("this Volume is not mounted in this container; commit() and reload() work inside a "
                       "function that has it in volumes={...}")


async def _locked(mount: MountedVolume) -> asyncio.Lock:
    if mount.lock is None:
        mount.lock = asyncio.Lock()
    return mount.lock


async def commit(client: Any, mount: MountedVolume) -> int:
    """Publish this container's changes; returns the number of paths sent."""
    if mount.read_only:
        raise InvalidError(f"the volume at {mount.mount_path} is mounted read-only (Volume.read_only()); "
                           "mount it without .read_only() to commit changes")
    async with await _locked(mount):
        mount.load()
        started = time.time_ns()
        scan = await asyncio.to_thread(files.scan, mount.dir)
        plan = plan_commit(mount.base, scan)
        hashed = await asyncio.to_thread(_hash_all, mount.dir, plan.to_hash)
        puts: list[Entry] = []
        deleted = set(plan.deletes)
        new_base = {p: b for p, b in mount.base.items() if p not in deleted}
        blocks: dict[str, BlockSource] = {}
        sizes: dict[str, int] = {}
        for path, (digests, size, kept) in hashed.items():
            st = scan[path]
            entry = Entry(path, FILE, tuple(digests), size, st.mode, st.mtime_ns // 1_000_000_000)
            known = mount.base.get(path)
            new_base[path] = Base(entry, trusted_mtime(st.mtime_ns, started))
            if known is not None and known.entry.same_content(entry):
                new_base[path] = Base(known.entry, trusted_mtime(st.mtime_ns, started))
                continue
            puts.append(entry)
            for i, digest in enumerate(digests):
                sizes[digest] = min(BLOCK_SIZE, size - i * BLOCK_SIZE)
                blocks[digest] = kept[i] if kept is not None else _reader(mount.dir / path, i)
        for path in plan.dirs:
            st = scan[path]
            entry = Entry(path, DIRECTORY, (), 0, st.mode, st.mtime_ns // 1_000_000_000)
            puts.append(entry)
            new_base[path] = Base(entry, st.mtime_ns)
        if not puts and not plan.deletes:
            mount.base = new_base
            return 0
        await upload_blocks(client, blocks, sizes)
        got = await client.call("volume.commit", {"volume_id": mount.volume_id, "puts": [e.to_wire() for e in puts],
                                                  "deletes": plan.deletes, "force": True})
        mount.version = int(got["version"])
        mount.base = new_base
        await asyncio.to_thread(mount.save)
        return len(puts) + len(plan.deletes)


def _reader(path: Path, index: int) -> Any:
    return lambda: files.read_block(path, index)


def _hash_all(root: Path, paths: list[str]) -> dict[str, tuple[list[str], int, list[bytes] | None]]:
    out = {}
    for path in paths:
        try:
            out[path] = files.hash_blocks(root / path, KEEP_FOR_UPLOAD)
        except FileNotFoundError:
            continue  # removed since the scan: the next commit sends the delete
    return out


async def reload(client: Any, mount: MountedVolume) -> None:
    """Bring in the latest committed state (keeping uncommitted local changes)."""
    if mount.read_only:
        raise InvalidError(f"the volume at {mount.mount_path} is mounted read-only: it shows the state committed "
                           "when the container started, and reload() can't change it; mount it without "
                           ".read_only() to reload")
    async with await _locked(mount):
        busy = files.open_files_under(mount.dir)
        if busy:
            raise InvalidError(f"volume busy: can't reload the volume at {mount.mount_path} while files under it are "
                               f"open in this container ({', '.join(busy[:3])}); close them and call reload() again")
        mount.load()
        got = await client.call("volume.manifest", {"volume_id": mount.volume_id})
        latest = {e.path: e for e in (Entry.from_wire(raw) for raw in got["entries"])}
        scan = await asyncio.to_thread(files.scan, mount.dir)
        base = await asyncio.to_thread(_vouch_by_content, mount.dir, mount.base, scan)
        plan = plan_reload(base, latest, scan)
        for path in plan.remove:
            files.remove_path(mount.dir, path)
        base = dict(plan.base)
        await write_entries(client, mount.dir, plan.write, base)
        mount.base = base
        mount.version = int(got["version"])
        await asyncio.to_thread(mount.save)


def _vouch_by_content(root: Path, base: dict[str, Base], scan: dict[str, Any]) -> dict[str, Base]:
    """Files committed moments ago have no trusted mtime; hash them, so that a reload doesn't take
    them for local changes (and keep them over others' newer commits)."""
    out = dict(base)
    for path, known in base.items():
        st = scan.get(path)
        if known.mtime_ns != UNKNOWN_MTIME or st is None or st.type != FILE or st.size != known.entry.size:
            continue
        try:
            digests, _, _ = files.hash_blocks(root / path)
        except FileNotFoundError:
            continue
        if tuple(digests) == known.entry.blocks and st.mode == known.entry.mode:
            out[path] = Base(known.entry, st.mtime_ns)
    return out


async def write_entries(client: Any, root: Path, entries: list[Entry], base: dict[str, Base]) -> None:
    """Create directories and fetch and write files, recording each in `base`."""
    for entry in entries:
        if entry.type == DIRECTORY:
            files.make_directory(root, entry)
            base[entry.path] = Base(entry, files.mtime_ns_of(entry))
    wanted = [e for e in entries if e.type == FILE]
    by_block: dict[str, list[Entry]] = defaultdict(list)
    for entry in wanted:
        for digest in entry.blocks:
            by_block[digest].append(entry)
    single = {e.path for e in wanted if len(e.blocks) <= 1}
    for entry in wanted:
        if not entry.blocks:
            base[entry.path] = Base(entry, files.write_file(root, entry, []))
    pending: dict[str, dict[str, bytes]] = defaultdict(dict)
    sizes = {d: min(BLOCK_SIZE, es[0].size) for d, es in by_block.items()}
    async for digest, data in download_blocks(client, list(by_block), sizes):
        for entry in by_block[digest]:
            if entry.path in single:
                base[entry.path] = Base(entry, files.write_file(root, entry, [data]))
                continue
            pending[entry.path][digest] = data
            if len(pending[entry.path]) == len(set(entry.blocks)):
                chunks = pending.pop(entry.path)
                base[entry.path] = Base(entry, files.write_file(root, entry, [chunks[d] for d in entry.blocks]))


async def commit_all_at_exit(client: Any) -> None:
    """The automatic commit of a container that exits normally."""
    for mount in mounted():
        if mount.read_only:
            continue
        try:
            await commit(client, mount)
        except Exception as exc:
            print(f"skylift: committing the volume at {mount.mount_path} on exit failed: {exc}", file=sys.stderr,
                  flush=True)
