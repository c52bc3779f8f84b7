"""A container's root: the image's layers stacked read-only with overlayfs, plus a fresh writable layer.

Mounting costs ~0.15 ms whatever the number of layers, so layers are never flattened. Layers are plain
directories in overlayfs's own format: a deleted file is a whiteout (a 0/0 character device), a replaced
directory carries the `trusted.overlay.opaque` attribute. A build step's upper directory is therefore
a layer as it stands. `redirect_dir`, `metacopy` and `index` are off so that an upper directory never
refers to the layers below it by path or inode and stays valid on any stack of the same parents.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ... import _libc

_OPTIONS = "redirect_dir=off,metacopy=off,index=off"
_MAX_DATA = 4095  # the kernel copies mount options into one page


class OverlayError(RuntimeError):
    pass


def _escape(path: Path) -> str:
    text = str(path)
    if "," in text or "\n" in text:
        raise OverlayError(f"layer path {text!r} contains a comma or newline, which overlayfs can't take")
    return text.replace("\\", "\\\\").replace(":", "\\:")


def mount_overlay(layers: list[Path], upper: Path, work: Path, target: Path, *,
                  idmap: tuple[int, Path, int] | None = None) -> None:
    """Mount overlay(`layers`, lowest first) with `upper` as the writable layer on `target`.

    `idmap` = (user namespace fd, a directory, host uid of that namespace's root): each layer is
    shown through an idmapped mount under the directory, and `upper` and `work` belong to that uid,
    so the namespace's root owns the image's root-owned files (a snapshot template's sandbox).
    """
    if not layers:
        raise OverlayError("a container needs at least one image layer")
    for layer in layers:
        if not layer.is_dir():
            raise OverlayError(f"image layer {layer} is missing")
    for d in (upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    if idmap is not None:
        userns_fd, directory, owner = idmap
        layers = [attach_idmapped(layer, directory / str(i), userns_fd) for i, layer in enumerate(layers)]
        for d in (upper, work):
            os.chown(d, owner, owner)
    lower = ":".join(_escape(p) for p in reversed(layers))
    data = f"lowerdir={lower},upperdir={_escape(upper)},workdir={_escape(work)},{_OPTIONS}"
    if len(data) > _MAX_DATA:
        raise OverlayError(
            f"{len(layers)} layers make overlay options of {len(data)} bytes (limit {_MAX_DATA}); "
            "keep the layer cache under a shorter path"
        )
    _libc.mount("overlay", str(target), "overlay", _libc.MS_NOSUID | _libc.MS_NODEV, data)


def attach_idmapped(source: Path, target: Path, userns_fd: int) -> Path:
    """Mount `source` (a directory or a file) at `target` with its owners shifted through the user
    namespace's mapping."""
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    fd = _libc.open_tree_idmapped(str(source), userns_fd)
    try:
        _libc.move_mount(fd, str(target))
    finally:
        os.close(fd)
    return target


def unmount(target: Path) -> None:
    """Detach `target` if it is mounted (lazily: open files in dying processes don't make it fail)."""
    with contextlib.suppress(OSError):
        _libc.umount(str(target), _libc.MNT_DETACH)


def is_mountpoint(path: Path) -> bool:
    return os.path.ismount(path)


def mounts_below(path: Path) -> list[str]:
    """Mount points at or under `path`, deepest first."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4].encode().decode("unicode_escape")
            if mountpoint == prefix or mountpoint.startswith(prefix + "/"):
                found.append(mountpoint)
    return sorted(found, key=len, reverse=True)


def unmount_all_below(path: Path) -> bool:
    """Detach every mount at or under `path` (e.g. debootstrap's /proc after an interruption).

    Returns whether none is left: never delete a tree that still has a mount in it (a bound /dev
    would be emptied on the host).
    """
    for mountpoint in mounts_below(path):
        with contextlib.suppress(OSError):
            _libc.umount(mountpoint, _libc.MNT_DETACH)
    return not mounts_below(path)
