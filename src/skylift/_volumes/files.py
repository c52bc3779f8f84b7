"""Volume files on a local disk: scanning, hashing, writing, and the base a container started from.

Shared by the worker (which materialises a volume into a container's directory) and the
container runtime (which commits and reloads it). The decisions are in `manifest`; this
module is the I/O around them.

The base file (`<task>/volume-meta/<n>.base`, msgpack) records what the worker wrote: the
committed entries and the mtime each file got, so a commit hashes only files whose size or mtime
changed since.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat as stat_module
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack

from .manifest import BLOCK_SIZE, DIRECTORY, FILE, Base, Entry, Stat

FICLONE = 0x40049409  # ioctl: share the source's extents (btrfs, xfs, bcachefs); EOPNOTSUPP elsewhere
_clone_works: bool | None = None


def mtime_ns_of(entry: Entry) -> int:
    return entry.mtime * 1_000_000_000


# ---- scanning and hashing -------------------------------------------------------------------


def scan(root: Path) -> dict[str, Stat]:
    """Every file and directory under `root` (relative paths), without following symlinks.
    Symlinks, sockets and devices are not part of a volume and are skipped."""
    out: dict[str, Stat] = {}
    stack = [("", str(root))]
    while stack:
        rel, directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat_module.S_ISDIR(st.st_mode):
                out[path] = Stat(DIRECTORY, 0, stat_module.S_IMODE(st.st_mode), st.st_mtime_ns)
                stack.append((path, entry.path))
            elif stat_module.S_ISREG(st.st_mode):
                out[path] = Stat(FILE, st.st_size, stat_module.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def hash_blocks(path: Path, keep_up_to: int = 0) -> tuple[list[str], int, list[bytes] | None]:
    """(sha256 of each BLOCK_SIZE block, size, the blocks themselves if the file is at most
    `keep_up_to` bytes: they are about to be uploaded, and reading twice would race writers)."""
    blocks: list[str] = []
    kept: list[bytes] = []
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK_SIZE):
            blocks.append(hashlib.sha256(chunk).hexdigest())
            size += len(chunk)
            if size <= keep_up_to:
                kept.append(chunk)
    return blocks, size, (kept if size <= keep_up_to else None)


def read_block(path: Path, index: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(index * BLOCK_SIZE)
        return f.read(BLOCK_SIZE)


def iter_file_blocks(fileobj: Any) -> Iterator[bytes]:
    while chunk := fileobj.read(BLOCK_SIZE):
        yield chunk


# ---- writing --------------------------------------------------------------------------------


def clone_file(src: Path, dst: Path) -> None:
    """Copy `src` to `dst`: a reflink where the filesystem can (instant, no extra space), else a
    kernel-side copy. Never a hard link: user code may write to the file in place, and the
    source (a blob cache) must stay intact."""
    global _clone_works
    if _clone_works is not False:
        try:
            with open(src, "rb") as s, open(dst, "wb") as d:
                fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
            _clone_works = True
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM):
                raise
            _clone_works = False
    shutil.copyfile(src, dst)


def finish_file(dst: Path, entry: Entry) -> int:
    """Set the mode and mtime the manifest gives; returns the mtime_ns the base should remember."""
    os.chmod(dst, entry.mode or 0o644)
    mtime_ns = mtime_ns_of(entry)
    os.utime(dst, ns=(mtime_ns, mtime_ns))
    return mtime_ns


def write_file(root: Path, entry: Entry, chunks: Iterable[bytes]) -> int:
    """Write a file of the volume atomically (temp file + rename); returns its base mtime_ns."""
    target = root / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".skylift-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        mtime_ns = finish_file(Path(tmp), entry)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return mtime_ns


def make_directory(root: Path, entry: Entry) -> None:
    target = root / entry.path if entry.path else root
    if target.exists() and not target.is_dir():
        target.unlink()
    target.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(target, entry.mode or 0o755)


def remove_path(root: Path, path: str) -> None:
    target = root / path
    try:
        if target.is_dir() and not target.is_symlink():
            target.rmdir()  # left in place when local, uncommitted files remain inside
        else:
            target.unlink()
    except (FileNotFoundError, OSError):
        pass


# ---- the base file --------------------------------------------------------------------------


def write_base(path: Path, version: int, base: dict[str, Base]) -> None:
    rows = [[*b.entry.to_wire(), b.mtime_ns] for b in base.values()]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgpack.packb({"version": version, "entries": rows}, use_bin_type=True))
    os.replace(tmp, path)


def read_base(path: Path) -> tuple[int, dict[str, Base]]:
    data = msgpack.unpackb(path.read_bytes(), raw=False)
    base = {}
    for row in data["entries"]:
        entry = Entry(row[0], row[1], tuple(row[2]), row[3], row[4], row[5])
        base[entry.path] = Base(entry, row[6])
    return int(data["version"]), base


# ---- open files -----------------------------------------------------------------------------


def open_files_under(root: Path, pid: int | str = "self") -> list[str]:
    """Files this process holds open under `root` (what makes a reload unsafe)."""
    real = os.path.realpath(root)
    found = []
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if (target == real or target.startswith(real + os.sep)) and os.path.isfile(target):
            found.append(target)
    return found
