"""A container's ephemeral disk: its writable layer (and so /tmp) on a size-limited filesystem of its own.

    disk = EphemeralDisk.create(state_dir / "disk.img", state_dir / "disk", size_mb=10240)
    upper, work = disk.upper, disk.work    # overlayfs's writable layer and work directory
    disk.remove()                          # unmount (the loop device frees itself) and delete the file

The filesystem is ext4 in a sparse file on a loop device: only what the container writes takes space
on the host, and a write past `size_mb` fails with ENOSPC inside the container instead of filling the
host's disk. Chosen over the alternatives (docs/containers.md, "Default limits"):

- a tmpfs upper layer would hold the whole disk in RAM, charged to the container's memory limit;
- ext4/xfs project quotas need the host filesystem mounted with `prjquota` (few are);
- a loop device costs ~1 ms to format (no journal; inode tables are never zeroed: `lazy_itable_init`
  at format, `noinit_itable` at mount, so no background thread writes them) and ~1 ms to attach and
  mount. The device is attached with LO_FLAGS_AUTOCLEAR: it detaches itself once unmounted, so a
  worker that dies leaves no device behind once `cleanup_stale` has unmounted its containers.

Formatting runs `mke2fs`, a process start the worker pays 5-15 ms for on a busy machine, so a worker
keeps a few images formatted ahead (`use_spares`: a directory beside its containers' state, on the same
filesystem); a container takes one by renaming it, and a background thread formats the next. An image
is only ever used by one container: a taken spare is the same fresh filesystem `mke2fs` would make.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import struct
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from ... import _libc

log = logging.getLogger(__name__)
LOOP_CONTROL = "/dev/loop-control"
_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4
# struct loop_config {u32 fd; u32 block_size; struct loop_info64 info (232 bytes); u64 reserved[8]}
_LOOP_CONFIG = struct.Struct("=II232x64x")
_LO_FLAGS_OFFSET = 8 + 5 * 8 + 3 * 4  # loop_info64.lo_flags
_ATTACH_TRIES = 16  # another start may take the free device between GET_FREE and CONFIGURE
_MKFS = ("mke2fs", "-t", "ext4", "-q", "-F", "-m", "0", "-O", "^has_journal,^resize_inode",
         "-E", "lazy_itable_init=1,nodiscard")
_MOUNT_OPTIONS = "noinit_itable"


class DiskError(RuntimeError):
    """The ephemeral disk could not be made (no loop devices, no mke2fs)."""


def unavailable_reason() -> str | None:
    """Why ephemeral disks can't be made on this host, or None when they can."""
    if not os.path.exists(LOOP_CONTROL):
        return f"{LOOP_CONTROL} is missing (load the loop module: modprobe loop)"
    if shutil.which("mke2fs") is None:
        return "mke2fs is missing (install the Debian package e2fsprogs)"
    return None


def _attach(image: Path) -> tuple[str, int]:
    """A free loop device backed by `image` and an open fd of it: the device detaches itself when its
    last user closes it, so keep the fd until the filesystem is mounted."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        control = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(_ATTACH_TRIES):
                number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
                try:
                    config = bytearray(_LOOP_CONFIG.pack(backing, 0))
                    struct.pack_into("=I", config, _LO_FLAGS_OFFSET, _LO_FLAGS_AUTOCLEAR)
                    fcntl.ioctl(fd, _LOOP_CONFIGURE, bytes(config))
                    return device, fd
                except OSError as e:
                    os.close(fd)
                    if e.errno != errno.EBUSY:
                        raise
        finally:
            os.close(control)
    finally:
        os.close(backing)
    raise DiskError(f"no free loop device for {image} after {_ATTACH_TRIES} tries")


@dataclass
class EphemeralDisk:
    image: Path
    mountpoint: Path
    size_mb: int

    @property
    def upper(self) -> Path:
        return self.mountpoint / "upper"

    @property
    def work(self) -> Path:
        return self.mountpoint / "work"

    @classmethod
    def create(cls, image: Path, mountpoint: Path, size_mb: int) -> EphemeralDisk:
        why = unavailable_reason()
        if why is not None:
            raise DiskError(why)
        image.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not _spares.take(size_mb, image):
                _format(image, size_mb)
            device, fd = _attach(image)
            try:
                mountpoint.mkdir(parents=True, exist_ok=True)
                _libc.mount(device, str(mountpoint), "ext4", _libc.MS_NOSUID | _libc.MS_NODEV, _MOUNT_OPTIONS)
            finally:
                os.close(fd)  # the mount holds the device from here (or nothing does, and it detaches)
        except BaseException:
            image.unlink(missing_ok=True)
            raise
        disk = cls(image, mountpoint, size_mb)
        disk.upper.mkdir()
        disk.work.mkdir()
        return disk

    def remove(self) -> None:
        """Unmount (lazily: a dying process may still hold a file) and delete the backing file; the
        loop device detaches itself when the filesystem is finally released."""
        with contextlib.suppress(OSError):
            _libc.umount(str(self.mountpoint), _libc.MNT_DETACH)
        if not os.path.ismount(self.mountpoint):
            with contextlib.suppress(OSError):
                self.mountpoint.rmdir()
        self.image.unlink(missing_ok=True)


def _format(image: Path, size_mb: int) -> None:
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)  # sparse: the host's disk holds only what is written
    result = subprocess.run([*_MKFS, str(image)], capture_output=True, text=True)
    if result.returncode != 0:
        raise DiskError(f"mke2fs failed for {image}: {result.stderr.strip() or result.returncode}")


class _Spares:
    """Images formatted ahead, by size, in one directory (`use_spares`); none until a worker asks for them."""

    KEEP = 2  # of each size asked for: enough for a burst of cold starts while the thread catches up

    def __init__(self) -> None:
        self.directory: Path | None = None
        self._lock = threading.Lock()
        self._filling: set[int] = set()

    def take(self, size_mb: int, dest: Path) -> bool:
        """Move a ready image of `size_mb` to `dest` (same filesystem); False when there is none."""
        if self.directory is None:
            return False
        taken = False
        with self._lock:
            for entry in sorted(self.directory.glob(f"{size_mb}-*.img")):
                try:
                    os.replace(entry, dest)
                except OSError:  # another filesystem (EXDEV), or gone: format one the slow way
                    continue
                taken = True
                break
        self.fill(size_mb)
        return taken

    def fill(self, size_mb: int) -> None:
        with self._lock:
            if self.directory is None or size_mb in self._filling:
                return
            self._filling.add(size_mb)
        threading.Thread(target=self._fill, args=(self.directory, size_mb), name="skylift-spare-disks",
                         daemon=True).start()

    def _fill(self, directory: Path, size_mb: int) -> None:
        # at the lowest priority (inherited by mke2fs), as the network pool refills: not in a start's way
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            while len(list(directory.glob(f"{size_mb}-*.img"))) < self.KEEP:
                partial = directory / f".{size_mb}-{uuid.uuid4().hex}.partial"
                try:
                    _format(partial, size_mb)
                    os.replace(partial, directory / f"{size_mb}-{uuid.uuid4().hex}.img")  # whole, or not there
                finally:
                    partial.unlink(missing_ok=True)
        except (OSError, DiskError) as e:
            log.info("no spare ephemeral disks (each container formats its own): %s", e)
        finally:
            with self._lock:
                self._filling.discard(size_mb)


_spares = _Spares()


def use_spares(directory: Path, sizes: tuple[int, ...] = ()) -> None:
    """Keep formatted images ahead in `directory` (on the filesystem of the containers' state directories),
    starting with `sizes` now; other sizes are kept once a container has asked for one."""
    if unavailable_reason() is not None:
        return
    for partial in directory.glob(".*.partial") if directory.is_dir() else []:
        partial.unlink(missing_ok=True)  # a worker that died while formatting
    _spares.directory = directory
    for size_mb in sizes:
        _spares.fill(size_mb)


_warned = False


def ephemeral_disk(state: Path, size_mb: int) -> EphemeralDisk | None:
    """A container's disk at `state`/disk(.img), or None (with one warning per worker) where the host can't."""
    global _warned
    try:
        return EphemeralDisk.create(state / "disk.img", state / "disk", size_mb)
    except DiskError as e:
        if not _warned:
            _warned = True
            log.warning("containers' ephemeral_disk is not enforced on this worker: %s; their writable layers "
                        "grow on the host's disk and /tmp is a tmpfs bounded by their memory limit", e)
        return None
