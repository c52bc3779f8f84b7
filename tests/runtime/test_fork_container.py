"""The pure parts of making a forked child a container (`_runtime/fork_container.py`, `container/forked.py`)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from skylift._runtime import fork_container
from skylift._runtime.fork_container import mounts_to_carry


def test_docstring_examples() -> None:
    assert doctest.testmod(fork_container).failed == 0


def test_a_forked_container_carries_the_templates_mounts_but_not_its_private_ones() -> None:
    points = ["/", "/proc", "/proc/sys", "/proc/keys", "/dev", "/dev/shm", "/dev/pts", "/sys", "/sys/fs/cgroup",
              "/sys/fs/cgroup/memory", "/tmp", "/etc/hosts", "/etc/resolv.conf", "/opt/skylift-runtime/skylift",
              "/run/skylift", "/run/skylift-fork/root", "/run/skylift-fork/layers", "/run/skylift-fork/hidden",
              "/run/skylift-fork/hidden/proc", "/run/skylift-fork/spec.msgpack", "/sys"]
    # /dev and /sys come with what is inside them; /proc and /tmp are made anew; the fork directory stays behind
    assert mounts_to_carry(points, "/run/skylift-fork") == [
        "/dev", "/etc/hosts", "/etc/resolv.conf", "/opt/skylift-runtime/skylift", "/run/skylift", "/sys"]


def test_a_path_that_only_shares_a_prefix_is_not_below() -> None:
    assert mounts_to_carry(["/tmpdata", "/procfs", "/run/skylift-forked"], "/run/skylift-fork") == [
        "/procfs", "/run/skylift-forked", "/tmpdata"]


def test_the_fork_request_names_its_fds_in_order(tmp_path: Path) -> None:
    from skylift.worker.container import forked, policy
    from skylift.worker.container.cgroups import CgroupStats

    class FakeCgroup:
        join_files = [tmp_path / "cpu" / "tasks", tmp_path / "memory" / "tasks"]
        visible_dirs = [(tmp_path / "cpu", "cpu"), (tmp_path / "memory", "memory")]

        def stats(self) -> CgroupStats:
            return CgroupStats(cpu_seconds=0.5, memory_bytes=64 << 20, memory_peak_bytes=64 << 20, oom_kills=1,
                               pids=0)

    seccomp = tmp_path / "filter.bpf"
    seccomp.write_bytes(b"\x06\x00\x00\x00\x00\x00\xff\x7f")
    sandbox = forked.ForkedSandbox("ta-1", tmp_path / "layers", FakeCgroup(), None, 64,  # type: ignore[arg-type]
                                   binds=[("/host/vol", "/data", False)])
    sandbox._fds = [11, 12, 13, 14, 15]  # two cgroup files (no network: block_network), two views, the volume
    original = forked.seccomp.compiled_filter
    forked.seccomp.compiled_filter = lambda directory, template=False: seccomp  # type: ignore[assignment]
    try:
        message, fds = sandbox.request()
    finally:
        forked.seccomp.compiled_filter = original  # type: ignore[assignment]
    assert fds == [11, 12, 13, 14, 15]
    assert message["fds"] == {"netns": None, "cgroups": [2, 3]}
    assert message["cgroup_views"] == [[4, "cpu"], [5, "memory"]]
    assert message["binds"] == [[6, "/data", False]]
    assert message["layers"] == "/run/skylift-fork/layers/ta-1" and message["lower"] == "/run/skylift-fork/root"
    assert message["capabilities"] == sorted(policy.CAPABILITIES.values())
    assert message["seccomp"] == seccomp.read_bytes()
    assert sandbox.exit_reason(137) == "exceeded its memory limit of 64 MiB and was killed (out of memory)"


def test_the_template_gets_a_filter_of_its_own(tmp_path: Path) -> None:
    from skylift.worker.container import seccomp

    assert set(seccomp.DENIED_SYSCALLS) >= seccomp.TEMPLATE_ALLOWED  # only calls the container filter denies
    try:
        normal, template = seccomp.compiled_filter(tmp_path), seccomp.compiled_filter(tmp_path, template=True)
    except seccomp.SeccompUnavailable as exc:
        pytest.skip(str(exc))
    assert normal != template and normal.read_bytes() != template.read_bytes()
