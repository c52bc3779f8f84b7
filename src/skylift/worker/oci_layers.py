"""Registry images made into overlayfs layers: each tar layer extracted once, whiteouts converted.

    image = pull("127.0.0.1:5000/team/app:1", oci_root, credentials=None, log=print)
    image.layers    # directories, lowest first, ready to stack with overlayfs

A layer is stored under `oci_root/sha256-<hex of its compressed digest>/` and shared by every image
that has it. Its tar stream is extracted as it downloads (the digest is checked at the end; a
mismatch throws the extraction away), into a temporary directory renamed into place when complete.
OCI whiteouts become overlayfs whiteouts: `.wh.name` a 0/0 character device `name`, `.wh..wh..opq`
the `trusted.overlay.opaque=y` attribute on its directory. Entries are created without following
symlinks, paths with `..` are refused, and `trusted.*` attributes from the tar are dropped (a layer
must not be able to forge overlayfs metadata).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, cast

from .container.host import arch, tool
from .registry import Blob, RegistryClient, RegistryError, docker_config_credentials, parse_reference

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
Log = Callable[[str], None]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class LayerError(RegistryError):
    """A layer's tar can't be made into a layer (unsafe paths, an unknown compression)."""


@dataclass
class PulledImage:
    reference: str
    digest: str
    layers: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None


def _relative(name: str) -> list[str]:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer entry {name!r} leaves the layer ('..')")
    return parts


def _remove(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _parent(root: Path, parts: list[str]) -> Path:
    """The directory that will hold `parts[-1]`, created as needed; never through a symlink."""
    here = root
    for part in parts[:-1]:
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            os.mkdir(here, 0o755)
            continue
        if not stat.S_ISDIR(mode):
            raise LayerError(f"layer entry {'/'.join(parts)!r} goes through {here.relative_to(root)}, which is not "
                             "a directory in this layer")
    return here


def _attributes(path: Path, member: tarfile.TarInfo) -> None:
    os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    for key, value in (member.pax_headers or {}).items():
        if key.startswith("SCHILY.xattr.") and not key[13:].startswith("trusted."):
            with contextlib.suppress(OSError):
                os.setxattr(path, key[13:], value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
    if not member.isdir():
        with contextlib.suppress(OSError):
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def extract(stream: Readable, dest: Path) -> None:
    """Extract a (possibly gzip'd) layer tar from `stream` into `dest` as an overlayfs layer."""
    directories: list[tuple[Path, float]] = []
    with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|*") as tar:
        for member in tar:
            parts = _relative(member.name)
            if not parts:
                continue
            parent = _parent(dest, parts)
            name = parts[-1]
            if name == OPAQUE_MARKER:
                os.setxattr(parent, "trusted.overlay.opaque", b"y")
                continue
            if name.startswith(WHITEOUT_PREFIX):
                target = parent / name[len(WHITEOUT_PREFIX):]
                _remove(target)
                os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                continue
            path = parent / name
            if member.isdir():
                if not os.path.isdir(path) or os.path.islink(path):
                    _remove(path)
                    os.mkdir(path, 0o755)
                directories.append((path, member.mtime))
            else:
                _remove(path)
                if member.isreg():
                    source = tar.extractfile(member)
                    assert source is not None
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
                elif member.issym():
                    os.symlink(member.linkname, path)
                elif member.islnk():
                    target = dest.joinpath(*_relative(member.linkname))
                    if not os.path.lexists(target):
                        raise LayerError(f"hard link {member.name!r} points at {member.linkname!r}, which is not in "
                                         "this layer")
                    os.link(target, path, follow_symlinks=False)
                    continue  # the link shares its target's attributes
                elif member.ischr() or member.isblk():
                    kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                    os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
                elif member.isfifo():
                    os.mkfifo(path, 0o600)
                else:
                    continue
            _attributes(path, member)
    for path, mtime in reversed(directories):
        with contextlib.suppress(OSError):
            os.utime(path, (mtime, mtime))


@contextlib.contextmanager
def _decompressed(stream: Readable, media_type: str) -> Iterator[Readable]:
    """gzip and plain tar go to tarfile as they are; zstd through the `zstd` tool."""
    if not media_type.endswith("zstd"):
        yield stream
        return
    zstd = tool("zstd")
    if zstd is None:
        raise LayerError("the image has zstd-compressed layers; install the Debian package zstd on the worker")
    process = subprocess.Popen([zstd, "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    stdin = process.stdin

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), stdin:
            while chunk := stream.read(1 << 20):
                stdin.write(chunk)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield process.stdout
    finally:
        process.stdout.read()
        feeder.join()
        if process.wait() != 0:
            raise LayerError("zstd could not decompress a layer")


def ensure_layer(client: RegistryClient, blob: Blob, oci_root: Path, log: Log) -> Path:
    """The extracted layer of `blob`, pulled unless another image brought it already."""
    if "foreign" in blob.media_type:
        raise LayerError(f"layer {blob.digest} is a foreign (Windows) layer; only Linux images can run")
    final = oci_root / blob.digest.replace(":", "-")
    if final.is_dir():
        return final
    oci_root.mkdir(parents=True, exist_ok=True)
    with open(oci_root / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(dir=oci_root, prefix=f".pull-{final.name[:19]}-"))
        try:
            with client.blob(blob.digest) as reader:
                with _decompressed(reader, blob.media_type) as stream:
                    extract(stream, tmp)
                    while stream.read(1 << 20):  # what the tar reader left: padding, the gzip trailer
                        pass
                reader.verify()
            tmp.chmod(0o755)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"pulled layer {blob.digest[:19]}… ({blob.size / (1 << 20):.1f} MiB)")
        return final


def pull(tag: str, oci_root: Path, credentials: tuple[str, str] | None, log: Log, *,
         environ: dict[str, Any] | None = None) -> PulledImage:
    """Pull `tag` for this machine's platform; its layers are extracted under `oci_root`."""
    ref = parse_reference(tag)
    client = RegistryClient(ref, credentials or docker_config_credentials(ref.registry, environ), environ=environ)
    log(f"pulling {ref}")
    manifest = client.resolve("linux", arch())
    layers = [ensure_layer(client, blob, oci_root, log) for blob in manifest.layers]
    log(f"{ref}: {len(layers)} layer(s), {manifest.digest}")
    return PulledImage(str(ref), manifest.digest, [p for p in layers if any(p.iterdir())], manifest.env,
                       manifest.workdir)
