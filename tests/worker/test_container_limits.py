"""Default limits of containers (issue 9, finding 7): pure decisions, no container needed."""

from __future__ import annotations

import doctest
import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

import skylift._runtime.disk_full
import skylift.worker.container.cgroups
import skylift.worker.container.seccomp
import skylift.worker.container_limits
from skylift._protocol import api
from skylift._runtime.disk_full import disk_full_note
from skylift.worker.container.seccomp import tracing_allowed
from skylift.worker.container_limits import (
    DEFAULT_EPHEMERAL_DISK_MB,
    DEFAULT_MEMORY_LIMIT_MAX_MB,
    Host,
    container_limits,
)


def test_docstring_examples() -> None:
    for module in (skylift.worker.container_limits, skylift._runtime.disk_full, skylift.worker.container.cgroups,
                   skylift.worker.container.seccomp):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_nothing_asked_gets_limits_that_protect_the_host() -> None:
    small = container_limits({}, {"cpu": 0.125, "memory": 128}, Host(cpus=2, memory_mb=2048))
    assert (small.cpu_request, small.cpu_limit, small.memory_limit_mb) == (0.125, 2.0, 1024)
    big = container_limits({}, {}, Host(cpus=96, memory_mb=1 << 20))
    assert (big.cpu_limit, big.memory_limit_mb) == (16.125, DEFAULT_MEMORY_LIMIT_MAX_MB)
    assert big.ephemeral_disk_mb == DEFAULT_EPHEMERAL_DISK_MB == 10240


def test_a_placed_request_above_the_default_limit_raises_the_limit() -> None:
    limits = container_limits({}, {"memory": 16384}, Host(cpus=8, memory_mb=8192))
    assert limits.memory_limit_mb == 16384


@given(cpu=st.one_of(st.none(), st.floats(0.01, 64)), cpu_limit=st.one_of(st.none(), st.floats(0.01, 64)),
       memory=st.one_of(st.none(), st.integers(1, 1 << 20)), disk=st.one_of(st.none(), st.integers(1, 1 << 22)),
       cpus=st.integers(1, 256), host_mb=st.integers(256, 1 << 22))
def test_explicit_values_win_and_limits_never_fall_below_requests(
        cpu: float | None, cpu_limit: float | None, memory: int | None, disk: int | None, cpus: int,
        host_mb: int) -> None:
    asked = {"cpu": cpu, "cpu_limit": cpu_limit, "memory": memory, "ephemeral_disk": disk}
    got = container_limits(asked, {}, Host(cpus=cpus, memory_mb=host_mb))
    assert got.cpu_limit >= got.cpu_request > 0 and got.memory_limit_mb >= 1
    if cpu is not None:
        assert got.cpu_request == cpu
    if memory is not None:
        assert got.memory_limit_mb == memory
    assert got.ephemeral_disk_mb == (disk or DEFAULT_EPHEMERAL_DISK_MB)


@pytest.mark.parametrize(("release", "allowed"), [
    ("4.7.10", False), ("3.10.0-1160.el7.x86_64", False), ("4.8.0", True), ("5.10.0-28-amd64", True),
    ("6.18.44-fc-v1300", True), ("garbage", False),
])
def test_tracing_is_refused_below_kernel_4_8_as_docker_does(release: str, allowed: bool) -> None:
    assert tracing_allowed(release) is allowed


def test_a_full_disk_is_named_even_when_wrapped() -> None:
    env = {api.ENV_EPHEMERAL_DISK_MB: "512"}
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("saving the checkpoint failed") from inner
    except RuntimeError as exc:
        note = disk_full_note(exc, env)
    assert note is not None and "512 MiB" in note and "ephemeral_disk=" in note
    assert disk_full_note(OSError(errno.ENOSPC, "full"), {}) is None  # no bounded disk: not ours to explain
    assert disk_full_note(OSError(errno.EACCES, "denied"), env) is None
