"""Ephemeral disks formatted ahead (worker/container/disk.py `use_spares`): a container takes a ready image
instead of running mke2fs at its start, and the worker formats the next one in the background."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from skylift.worker.container import disk

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(60)]


def ready(directory: Path, size_mb: int) -> list[Path]:
    return sorted(directory.glob(f"{size_mb}-*.img"))


def wait_for(directory: Path, size_mb: int, count: int) -> list[Path]:
    deadline = time.monotonic() + 30
    while len(ready(directory, size_mb)) < count:
        assert time.monotonic() < deadline, f"only {ready(directory, size_mb)} formatted ahead"
        time.sleep(0.02)
    return ready(directory, size_mb)


def test_a_disk_is_a_spare_formatted_ahead_and_the_next_is_formatted_behind(tmp_path: Path) -> None:
    spares = tmp_path / "spares"
    (spares).mkdir()
    (spares / ".64-dead.partial").write_bytes(b"")  # a worker died while formatting it
    try:
        disk.use_spares(spares, (64,))
        assert not (spares / ".64-dead.partial").exists()
        first = wait_for(spares, 64, disk._Spares.KEEP)
        state = tmp_path / "ta-1" / "sandbox"
        made = disk.EphemeralDisk.create(state / "disk.img", state / "disk", 64)
        try:
            assert os.path.ismount(made.mountpoint) and made.upper.is_dir()
            assert first[0] not in ready(spares, 64)  # taken (renamed), not copied
            (made.upper / "f").write_bytes(b"x" * 4096)
            statvfs = os.statvfs(made.mountpoint)
            assert statvfs.f_blocks * statvfs.f_frsize <= 64 << 20  # the size asked for
            wait_for(spares, 64, disk._Spares.KEEP)  # and another formatted behind it
            # a size nobody asked for yet is formatted on the spot, then kept ahead too
            other = disk.EphemeralDisk.create(tmp_path / "ta-2" / "disk.img", tmp_path / "ta-2" / "disk", 32)
            other.remove()
            wait_for(spares, 32, 1)
        finally:
            made.remove()
    finally:
        disk._spares.directory = None  # (module state: later tests format their own)
        deadline = time.monotonic() + 10
        while disk._spares._filling and time.monotonic() < deadline:
            time.sleep(0.02)
