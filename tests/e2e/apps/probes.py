"""Small helpers the probe apps run inside containers (isolation.py, container_snapshots.py)."""

from __future__ import annotations


def read_first(*candidates: str) -> str:
    """The stripped text of the first file that can be read (e.g. a cgroup v1 file, else its v2 twin)."""
    for path in candidates:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return ""


def cgroup_limits() -> dict[str, str]:
    """This container's CPU quota and memory limit as its cgroups show them (v1 or v2)."""
    return {"cpu": read_first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max"),
            "memory": read_first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max")}
