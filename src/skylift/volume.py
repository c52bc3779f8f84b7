"""`modal.Volume`: a persistent, shared directory, mounted into containers by path.

Example:
    >>> import skylift as modal
    >>> vol = modal.Volume.from_name("my-data", create_if_missing=True)
    >>> app = modal.App("volumes")
    >>> @app.function(volumes={"/data": vol})
    ... def write() -> None:
    ...     with open("/data/hello.txt", "w") as f:
    ...         f.write("hi")
    ...     vol.commit()          # others see it after their mount or reload()

Consistency is Modal's: a container sees the last committed state when it starts; its writes are
published by `commit()` (and automatically when the container exits normally); others see them
after `reload()`. Concurrent commits: last write wins per file. From outside a container, read and
change files with `listdir`, `read_file`, `batch_upload`, `remove_file` and `copy_files`.
"""

from __future__ import annotations

import enum
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO, ClassVar

from ._aio import blocking, blocking_classmethod, context_classmethod, context_method, iterating
from ._client import Client, run_async, run_sync
from ._object import ObjectManager, _Ephemeral, _Object
from ._volumes import files
from ._volumes import mount as _volume_mount
from ._volumes.manifest import BLOCK_SIZE, DIRECTORY, FILE, Entry, PathError, normalize_path
from ._volumes.transfer import BlockSource, download_blocks, upload_blocks
from .exception import InvalidError


class FileEntryType(enum.IntEnum):
    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2
    SYMLINK = 3
    FIFO = 4
    SOCKET = 5


@dataclass(frozen=True)
class FileEntry:
    """A file or directory of a volume, as `listdir` returns it (Modal's FileEntry)."""

    path: str
    type: FileEntryType
    mtime: int
    size: int


def _path(path: str | os.PathLike[str]) -> str:
    try:
        return normalize_path(os.fspath(path))
    except PathError as exc:
        raise InvalidError(str(exc)) from None


class Volume(_Object):
    """A persistent directory shared by containers (Modal's `modal.Volume`)."""

    _kind: ClassVar[str] = "volume"
    _title: ClassVar[str] = "Volume"
    objects: ClassVar[ObjectManager]

    @classmethod
    def from_id(cls, volume_id: str, client: Any = None) -> Volume:  # type: ignore[override]
        """A handle to a Volume by its id (e.g. one passed along from another program)."""
        return cls._from_id(volume_id)

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None, create_if_missing: bool = False,
                  version: int | None = None, client: Any = None) -> Volume:
        """A handle to the named Volume (looked up on first use). `version` (Modal's v1/v2) is
        accepted; skylift has one implementation with v2's scale (no file-count cap)."""
        if version not in (None, 1, 2):
            raise InvalidError(f"Volume version must be 1 or 2, got {version!r}")
        return cls._by_name(name, environment_name, create_if_missing)

    _read_only: bool = False

    @context_classmethod
    def ephemeral(cls: type[Volume], *, client: Any = None,  # type: ignore[misc]
                  environment_name: str | None = None, version: int | None = None) -> Any:
        """An anonymous Volume for the `with` block. `version` (Modal's v1/v2) is accepted, as in from_name."""
        if version not in (None, 1, 2):
            raise InvalidError(f"Volume version must be 1 or 2, got {version!r}")
        return _Ephemeral(cls, environment_name)

    @blocking_classmethod
    async def rename(cls, old_name: str, new_name: str, *, client: Any = None,  # type: ignore[misc]
                     environment_name: str | None = None) -> None:
        """Rename a named Volume: same id and files under the new name (handles by the old name stop resolving)."""
        from . import _options, config

        _options.check_object_name(new_name, "Volume")
        await Client.from_env().call("object.rename", {"kind": "volume", "name": old_name, "new_name": new_name,
                                                       "environment": config.environment_name(environment_name)})

    def read_only(self) -> Volume:
        """This volume, mounted read-only where a function uses it: writes fail (EROFS), and neither
        `commit()` nor the automatic commit at exit sends anything."""
        return self.with_mount_options(read_only=True)

    def with_mount_options(self, *, read_only: bool | None = None, sub_path: str | PurePosixPath | None = None
                           ) -> Volume:
        """A handle to the same volume with other mount options. `read_only` is supported; `sub_path`
        (mounting one directory of the volume) is not available on skylift and raises."""
        if sub_path is not None:
            raise InvalidError(f"{self!r}.with_mount_options(sub_path=...): mounting part of a volume is not "
                               "available on skylift; mount the whole volume and use the subdirectory's path")
        copy = Volume(name=self._name, environment_name=self._environment_name, object_id=self._object_id,
                      loader=self._loader, create_if_missing=self._create_if_missing)
        copy._hydrated_for = self._hydrated_for
        copy._read_only = self._read_only if read_only is None else bool(read_only)
        return copy

    # ---- inside a container ------------------------------------------------------------------

    @blocking
    async def commit(self) -> None:
        """Publish this container's changes to the volume (inside a container that mounts it)."""
        mount = _volume_mount.find(await self._hydrate())
        await _volume_mount.commit(Client.from_env(), mount)

    @blocking
    async def reload(self) -> None:
        """See the latest committed state (inside a container that mounts it). Fails with
        "volume busy" while files under the mount are open."""
        mount = _volume_mount.find(await self._hydrate())
        await _volume_mount.reload(Client.from_env(), mount)

    # ---- from anywhere -----------------------------------------------------------------------

    @blocking
    async def listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]:
        """The entries under `path` ("/" for the root); a file lists itself."""
        got = await self._call("volume.listdir", {"path": _path(path), "recursive": recursive})
        return [FileEntry(p, FileEntryType(t), mtime, size) for p, t, size, mtime in got["entries"]]

    @iterating
    async def iterdir(self, path: str, *, recursive: bool = True) -> AsyncIterator[FileEntry]:
        got = await self._call("volume.listdir", {"path": _path(path), "recursive": recursive})
        for p, t, size, mtime in got["entries"]:
            yield FileEntry(p, FileEntryType(t), mtime, size)

    async def _file(self, path: str) -> Entry:
        got = await self._call("volume.file", {"path": _path(path)})
        entry = Entry.from_wire(got["entry"])
        if entry.type != FILE:
            raise InvalidError(f"{path!r} is a directory; use listdir()")
        return entry

    @iterating
    async def read_file(self, path: str) -> AsyncIterator[bytes]:
        """The file's contents, in chunks of up to 8 MiB. NotFoundError if there is no such file."""
        entry = await self._file(path)
        client = Client.from_env()
        for digest in entry.blocks:
            async for _, data in download_blocks(client, [digest]):
                yield data

    @blocking
    async def read_file_into_fileobj(self, path: str, fileobj: IO[bytes],
                                     progress_cb: Callable[..., Any] | None = None) -> int:
        """Write the file into `fileobj`; returns the number of bytes written."""
        entry = await self._file(path)
        client = Client.from_env()
        written = 0
        for digest in entry.blocks:
            async for _, data in download_blocks(client, [digest]):
                fileobj.write(data)
                written += len(data)
                if progress_cb is not None:
                    progress_cb(advance=len(data))
        return written

    @blocking
    async def remove_file(self, path: str, recursive: bool = False) -> None:
        """Remove a file, or a directory with `recursive=True`."""
        await self._call("volume.remove", {"path": _path(path), "recursive": recursive})

    @blocking
    async def copy_files(self, src_paths: list[str], dst_path: str, recursive: bool = False) -> None:
        """Copy files (directories with `recursive`) within the volume; no data moves."""
        await self._call("volume.copy", {"srcs": [_path(s) for s in src_paths], "recursive": recursive,
                                         "dst": os.fspath(dst_path)})

    @context_method
    def batch_upload(self, force: bool = False) -> VolumeUpload:
        """Upload local files in one commit: `with vol.batch_upload() as b: b.put_file(...)`.
        Without `force`, overwriting an existing file is an error."""
        return VolumeUpload(self, force)


class VolumeUpload:
    """The context manager of `Volume.batch_upload()`; everything is committed at the end."""

    def __init__(self, volume: Volume, force: bool) -> None:
        self._volume = volume
        self._force = force
        self._files: list[tuple[str, Path | bytes, int | None]] = []
        self._dirs: list[str] = []

    def put_file(self, local_file: str | os.PathLike[str] | BinaryIO | io.BytesIO, remote_path: str,
                 mode: int | None = None) -> None:
        remote = _path(remote_path)
        if not remote or str(remote_path).endswith("/"):
            raise InvalidError(f"remote_path {remote_path!r} must name a file, not a directory")
        if isinstance(local_file, (str, os.PathLike)):
            local = Path(local_file)
            if not local.is_file():
                raise FileNotFoundError(f"no local file {local}")
            self._files.append((remote, local, mode))
        else:
            self._files.append((remote, local_file.read(), mode))

    def put_directory(self, local_path: str | os.PathLike[str], remote_path: str, recursive: bool = True) -> None:
        local = Path(local_path)
        if not local.is_dir():
            raise FileNotFoundError(f"no local directory {local}")
        remote = PurePosixPath("/" + _path(remote_path))
        self._dirs.append(_path(str(remote)))
        pattern = "**/*" if recursive else "*"
        for item in sorted(local.glob(pattern)):
            rel = item.relative_to(local).as_posix()
            if item.is_file():
                self._files.append((_path(str(remote / rel)), item, None))
            elif item.is_dir():
                self._dirs.append(_path(str(remote / rel)))

    async def _commit(self) -> None:
        volume_id = await self._volume._hydrate()
        puts: list[Entry] = []
        blocks: dict[str, BlockSource] = {}
        sizes: dict[str, int] = {}
        now = int(time.time())
        for remote, source, mode in self._files:
            if isinstance(source, bytes):
                chunks = [source[i:i + BLOCK_SIZE] for i in range(0, len(source), BLOCK_SIZE)]
                digests = [hashlib.sha256(c).hexdigest() for c in chunks]
                for d, c in zip(digests, chunks, strict=True):
                    blocks[d], sizes[d] = c, len(c)
                size, file_mode, mtime = len(source), mode or 0o644, now
            else:
                digests, size, kept = files.hash_blocks(source, 1024 * 1024)
                st = source.stat()
                for i, d in enumerate(digests):
                    blocks[d] = kept[i] if kept is not None else _block_reader(source, i)
                    sizes[d] = min(BLOCK_SIZE, size - i * BLOCK_SIZE)
                file_mode, mtime = mode or (st.st_mode & 0o7777), int(st.st_mtime)
            puts.append(Entry(remote, FILE, tuple(digests), size, file_mode, mtime))
        puts += [Entry(d, DIRECTORY, (), 0, 0o755, now) for d in self._dirs if d]
        client = Client.from_env()
        await upload_blocks(client, blocks, sizes)
        await client.call("volume.commit", {"volume_id": volume_id, "puts": [e.to_wire() for e in puts],
                                            "deletes": [], "force": self._force})

    def __enter__(self) -> VolumeUpload:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            run_sync(self._commit())

    async def __aenter__(self) -> VolumeUpload:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await run_async(self._commit())


def _block_reader(path: Path, index: int) -> Callable[[], bytes]:
    return lambda: files.read_block(path, index)


Volume.objects = ObjectManager(Volume)

__all__ = ["FileEntry", "FileEntryType", "Volume", "VolumeUpload"]
