"""A Volume as data: the manifest of a committed snapshot, and the pure decisions over it.

A committed volume is a manifest, path → `Entry` (type, content blocks, size, mode, mtime); file
contents live in the content-addressed blob store, one blob per `BLOCK_SIZE` block, so a file is
stored once however many volumes and versions hold it. Everything here is pure and shared by the
three places that handle volumes:

* the control plane applies a commit to the manifest (`apply_commit`: last write wins per path);
* the worker materialises a manifest into a container's directory;
* the container diffs its directory against the manifest it started from (`plan_commit`) and
  brings in other containers' commits (`plan_reload`).

Paths are relative and normalised (`"a/b.txt"`, `""` is the root); `normalize_path` turns what a
user writes (`"/a/b.txt"`, `"a//b/"`) into that form and refuses `..`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

FILE = 1
DIRECTORY = 2

# Files are split into blocks this large, so any file fits the wire's frame limit and a changed
# tail re-uploads one block, not the whole file.
BLOCK_SIZE = 8 * 1024 * 1024
# A stat result this close to the scan is not trusted: a rewrite of the same size within the
# filesystem's timestamp granularity would look unchanged ("racily clean", as git calls it).
RACY_SECONDS = 2.0
UNKNOWN_MTIME = -1


class PathError(ValueError):
    """A volume path that can't be used (`..`, too long, NUL)."""


class Entry(NamedTuple):
    path: str
    type: int  # FILE or DIRECTORY
    blocks: tuple[str, ...]  # sha256 hex of each block; () for directories and empty files
    size: int
    mode: int
    mtime: int  # seconds since the epoch

    def to_wire(self) -> list[Any]:
        return [self.path, self.type, list(self.blocks), self.size, self.mode, self.mtime]

    @classmethod
    def from_wire(cls, raw: Any) -> Entry:
        if not isinstance(raw, (list, tuple)) or len(raw) != 6:
            raise ValueError(f"a manifest entry is [path, type, blocks, size, mode, mtime], got {raw!r}")
        path, kind, blocks, size, mode, mtime = raw
        if not isinstance(path, str) or kind not in (FILE, DIRECTORY) or not isinstance(blocks, (list, tuple)):
            raise ValueError(f"malformed manifest entry {raw!r}")
        if not all(isinstance(b, str) for b in blocks):
            raise ValueError(f"malformed block list in manifest entry for {path!r}")
        for value in (size, mode, mtime):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"malformed manifest entry for {path!r}: size, mode and mtime are integers >= 0")
        return cls(normalize_path(path), kind, tuple(blocks), size, mode & 0o7777, mtime)

    def same_content(self, other: Entry) -> bool:
        return self.type == other.type and self.blocks == other.blocks and self.mode == other.mode


Manifest = dict[str, Entry]


def normalize_path(path: str) -> str:
    """`"/a//b/"` → `"a/b"`; `"/"` → `""`. Refuses `..`, NUL and overlong paths."""
    if "\x00" in path:
        raise PathError(f"volume path {path!r} contains a NUL byte")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathError(f"volume path {path!r} must not contain '..'")
    normalized = "/".join(parts)
    if len(normalized.encode()) > 4096:
        raise PathError(f"volume path {path[:60]!r}… is longer than 4096 bytes")
    return normalized


def parents(path: str) -> list[str]:
    """Every ancestor directory of `path`, nearest last (the root "" excluded)."""
    out = []
    head = posixpath.dirname(path)
    while head:
        out.append(head)
        head = posixpath.dirname(head)
    out.reverse()
    return out


def is_under(path: str, directory: str) -> bool:
    return directory == "" or path == directory or path.startswith(directory + "/")


# ---------------------------------------------------------------------------------------------
# The control plane: applying a commit


@dataclass
class CommitResult:
    manifest: Manifest
    written: list[Entry] = field(default_factory=list)  # rows to upsert
    removed: list[str] = field(default_factory=list)  # rows to delete


def apply_commit(manifest: Mapping[str, Entry], puts: Iterable[Entry], deletes: Iterable[str],
                 mtime: int) -> CommitResult:
    """The manifest after a commit: last write wins per path, in arrival order.

    Deletes name exactly the paths the committer knew (never recursive), so a file another
    container added meanwhile survives; a directory that still has children stays. A put under a
    path that is a file replaces that file with a directory (like a later `rm x && mkdir x`).
    Missing parent directories are created.
    """
    new = dict(manifest)
    written: dict[str, Entry] = {}
    removed: set[str] = set()
    for path in deletes:
        if path in new:
            del new[path]
            removed.add(path)
            written.pop(path, None)
    for entry in puts:
        if entry.path == "":
            continue  # the root always exists
        for parent in parents(entry.path):
            current = new.get(parent)
            if current is None or current.type != DIRECTORY:
                new[parent] = written[parent] = Entry(parent, DIRECTORY, (), 0, 0o755, mtime)
                removed.discard(parent)
        current = new.get(entry.path)
        if current is not None and current.type == DIRECTORY and entry.type == FILE:
            for child in [p for p in new if p.startswith(entry.path + "/")]:
                del new[child]
                written.pop(child, None)
                removed.add(child)
        new[entry.path] = written[entry.path] = entry
        removed.discard(entry.path)
    # A deleted directory with surviving children is still a directory.
    for path in sorted(removed):
        if path not in new and any(p.startswith(path + "/") for p in new):
            new[path] = written[path] = Entry(path, DIRECTORY, (), 0, 0o755, mtime)
    removed -= set(new)
    return CommitResult(new, list(written.values()), sorted(removed))


# ---------------------------------------------------------------------------------------------
# The container: what changed since the manifest it started from


class Stat(NamedTuple):
    """What a directory scan sees of one path."""

    type: int
    size: int
    mode: int
    mtime_ns: int


class Base(NamedTuple):
    """A path as the container last synchronised it: the committed entry and the file's mtime then."""

    entry: Entry
    mtime_ns: int  # UNKNOWN_MTIME: don't trust the stat, hash the file


def stat_matches(base: Base, stat: Stat) -> bool:
    """True when the file provably still holds the base's content (no need to hash it)."""
    entry = base.entry
    if stat.type != entry.type:
        return False
    if stat.type == DIRECTORY:
        return True
    return (base.mtime_ns != UNKNOWN_MTIME and stat.size == entry.size and stat.mtime_ns == base.mtime_ns
            and stat.mode == entry.mode)


@dataclass
class CommitPlan:
    to_hash: list[str]  # files that may have changed: hash them, put the ones whose blocks differ
    dirs: list[str]  # new directories
    deletes: list[str]


def plan_commit(base: Mapping[str, Base], scan: Mapping[str, Stat]) -> CommitPlan:
    to_hash: list[str] = []
    dirs: list[str] = []
    for path, stat in scan.items():
        known = base.get(path)
        if known is not None and stat_matches(known, stat):
            continue
        if stat.type == DIRECTORY:
            dirs.append(path)
        else:
            to_hash.append(path)
    deletes = [path for path, known in base.items() if path not in scan or scan[path].type != known.entry.type]
    return CommitPlan(sorted(to_hash), sorted(dirs), sorted(deletes))


def trusted_mtime(mtime_ns: int, scan_started_ns: int) -> int:
    """The mtime to remember for a file just scanned; UNKNOWN_MTIME when it is too recent to trust."""
    if mtime_ns >= scan_started_ns - int(RACY_SECONDS * 1e9):
        return UNKNOWN_MTIME
    return mtime_ns


@dataclass
class ReloadPlan:
    write: list[Entry]  # fetch and write these (files) or create them (directories)
    remove: list[str]  # delete these local paths (deepest first)
    base: dict[str, Base]  # the new base, for entries this plan leaves in place


def plan_reload(base: Mapping[str, Base], latest: Mapping[str, Entry], scan: Mapping[str, Stat]) -> ReloadPlan:
    """Bring in others' commits. Paths changed here and not committed yet are left as they are
    (and stay changed, so the next commit sends them: last write wins)."""
    dirty = {p for p, s in scan.items() if p not in base or not stat_matches(base[p], s)}
    dirty |= {p for p in base if p not in scan}
    write: list[Entry] = []
    remove: list[str] = []
    new_base: dict[str, Base] = {}
    for path, entry in latest.items():
        if path in dirty:
            if path in base:
                new_base[path] = base[path]
            continue
        known = base.get(path)
        if known is not None and known.entry.same_content(entry) and path in scan:
            new_base[path] = known
        else:
            write.append(entry)
    for path, known in base.items():
        if path in latest:
            continue
        if path in dirty:
            new_base[path] = known
        elif path in scan:
            remove.append(path)
    write.sort(key=lambda e: (e.path.count("/"), e.type != DIRECTORY, e.path))
    remove.sort(key=lambda p: (-p.count("/"), p))
    return ReloadPlan(write, remove, new_base)


# ---------------------------------------------------------------------------------------------
# Listing


def list_directory(manifest: Mapping[str, Entry], path: str, recursive: bool) -> list[Entry] | None:
    """Entries under `path` (its children, or everything below with `recursive`); a file lists
    itself; None when nothing is there."""
    if path:
        entry = manifest.get(path)
        if entry is None:
            return None
        if entry.type == FILE:
            return [entry]
    prefix = path + "/" if path else ""
    out = []
    for p, entry in manifest.items():
        if p.startswith(prefix) and p != path and (recursive or "/" not in p[len(prefix):]):
            out.append(entry)
    out.sort(key=lambda e: e.path)
    return out
