"""Isolation through the public API, on the container runtime (root): files, processes, memory, the image."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from container_fixture import container_platform_fixture  # noqa: F401 - the container_platform fixture

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def isolation(container_platform: Any) -> Iterator[Any]:
    from apps import isolation

    with isolation.app.run():
        yield isolation


def test_a_function_sees_its_image_not_the_host(isolation: Any, platform: Any) -> None:
    marker = Path("/tmp") / f"skylift-marker-{uuid.uuid4().hex}"
    marker.write_text("host only")
    try:
        seen = isolation.probe.remote(str(marker))
    finally:
        marker.unlink()
    assert seen["sees_host_file"] is False
    assert seen["debian"].startswith("12.")  # the debian_slim root filesystem
    assert seen["exe"] == "/opt/skylift-venv/bin/python" and seen["prefix"] == "/opt/skylift-venv"
    assert isolation.probe.remote(str(platform.home / "token"))["sees_host_file"] is False


def test_containers_dont_see_each_others_processes(isolation: Any) -> None:
    tag = f"{1000 + uuid.uuid4().int % 1000}.{os.getpid()}"
    isolation.neighbour.remote(tag)
    on_host = subprocess.run(["pgrep", "-f", f"sleep {tag}"], capture_output=True, text=True).stdout.split()
    assert on_host, "the neighbour's process should be running (seen from the host)"
    seen = isolation.probe.remote("/nonexistent")
    assert not any(tag in cmdline for cmdline in seen["processes"]), seen["processes"]
    assert len(seen["processes"]) <= 3, seen["processes"]  # bubblewrap's init, the runtime, maybe a helper
    assert seen["pid"] < 10


def test_exceeding_the_memory_limit_is_a_clear_error(isolation: Any) -> None:
    with pytest.raises(Exception, match="exceeded its memory limit of 64 MiB") as info:
        isolation.hog.remote()
    assert "OutOfMemoryError" in str(info.value)
    assert isolation.probe.remote("/nonexistent")["debian"]  # the app carries on


def test_cpu_and_memory_requests_are_limits_and_block_network_leaves_loopback(isolation: Any) -> None:
    seen = isolation.limits.remote()
    assert seen["cpu"].split()[0] == "25000"  # a quarter of each 100 ms period (v1 quota or v2 cpu.max)
    assert seen["memory"] == str(96 << 20)
    # The function still answers: the control plane is reached through its socket, not the network.
    assert isolation.offline.remote() == ["lo"]


def test_a_function_that_asks_nothing_gets_default_limits(isolation: Any) -> None:
    from skylift.worker.container_limits import Host, container_limits

    expected = container_limits({}, {}, Host.this())  # the worker is this machine
    seen = isolation.defaults.remote()
    assert seen["memory"] == str(expected.memory_limit_mb << 20)
    assert seen["cpu"].split()[0] == str(int(expected.cpu_limit * 100_000))  # v1 quota or v2 cpu.max
    assert seen["shares"] in ("128", "5")  # Modal's default request, 0.125 core (v1 cpu.shares / v2 cpu.weight)


@pytest.mark.parametrize("path", ["/tmp/big", "/root/big"])
def test_writing_past_the_ephemeral_disk_is_enospc_and_stays_bounded(isolation: Any, platform: Any,
                                                                     path: str) -> None:
    seen = isolation.fill.remote(path)
    assert seen["errno"] == 28 and seen["written"] <= 64 << 20  # ENOSPC at 64 MiB, not an OOM kill
    assert "tmpfs" not in seen["tmp_mounts"]  # /tmp is on the bounded disk, not in RAM
    image = platform.home / "tasks" / seen["task_id"] / "sandbox" / "disk.img"
    assert image.stat().st_blocks * 512 <= 72 << 20  # the host's disk holds what was written, no more
    with pytest.raises(OSError) as info:
        isolation.fill.remote(path, fail=True)
    told = "\n".join([str(info.value), *getattr(info.value, "__notes__", [])])
    assert "ephemeral disk (64 MiB" in told and "ephemeral_disk=" in told, told


def test_the_platforms_state_files_are_private(platform: Any) -> None:
    home = platform.home
    assert os.stat(home).st_mode & 0o777 == 0o700
    for name in ("state.db", "state.db-wal", "server.log", "server.json", "token"):
        if (home / name).exists():
            assert (home / name).stat().st_mode & 0o777 == 0o600, name
