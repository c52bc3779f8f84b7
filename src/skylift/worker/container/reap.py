"""Reaping what a previous worker left in its own cgroup tree: sandboxes (bubblewrap inits) and cgroups.

Each worker puts its containers' cgroups under `skylift/<group>/` (`worker_group(home)`: the same
group for every worker process of one home, a different one for every other home on the host). A
worker that died — `kill -9`, killed by its supervisor, a crash — leaves its containers running:
bubblewrap's init is pid 1 of its namespace and may outlive its parent. At start (and on the way
out) the worker kills every process still in its own group and removes the cgroups, so nothing of
another worker on the same host is ever touched. Every process of a container is in its cgroup
(the launcher joins it before it execs bubblewrap), so the cgroup is the complete list.

    reaped = reap(worker_group(home))   # Reaped(containers=2, processes=5, cgroups=2)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .cgroups import PARENT, detect, v1_mounts, v2_root

log = logging.getLogger("skylift.worker")

KILL_TIMEOUT = 5.0  # killed processes leave their cgroup within milliseconds; a stuck one gets this long


@dataclass(frozen=True)
class Reaped:
    containers: int  # cgroups that still held processes
    processes: int  # processes killed
    cgroups: int  # cgroup directories removed (one per controller hierarchy on v1)


def worker_group(home: Path) -> str:
    """The cgroup group of the workers of `home` ("w-" + 12 hex digits of the resolved path)."""
    return "w-" + hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]


def group_dirs(group: str) -> list[Path]:
    """`skylift/<group>` in every hierarchy that holds this host's container cgroups."""
    version, _ = detect()
    if version == "v2":
        root = v2_root()
        return [root / PARENT / group] if root is not None else []
    if version == "v1":
        return sorted({mount / PARENT / group for mount in v1_mounts().values()})
    return []


def _procs(cgroup: Path) -> list[int]:
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def reap(group: str, *, roots: list[Path] | None = None) -> Reaped:
    """Kill every process in `group`'s container cgroups and remove them; what was found."""
    containers = processes = removed = 0
    seen: set[str] = set()  # a container's name: counted once though v1 has a directory per hierarchy
    for root in group_dirs(group) if roots is None else roots:
        if not root.is_dir():
            continue
        for cgroup in sorted(p for p in root.iterdir() if p.is_dir()):
            pids = _procs(cgroup)
            if pids and cgroup.name not in seen:
                containers += 1
            seen.add(cgroup.name)
            deadline = time.monotonic() + KILL_TIMEOUT
            while pids:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        processes += 1
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
                pids = _procs(cgroup)
            try:
                cgroup.rmdir()
                removed += 1
            except OSError as e:
                if e.errno != errno.ENOENT:
                    log.warning("could not remove the leftover cgroup %s: %s", cgroup, e)
        with contextlib.suppress(OSError):
            root.rmdir()
    return Reaped(containers, processes, removed)


def reap_and_log(group: str) -> Reaped:
    """`reap`, saying once what it found (nothing when there was nothing)."""
    try:
        reaped = reap(group)
    except OSError as e:
        log.warning("could not reap the containers a previous worker left: %s", e)
        return Reaped(0, 0, 0)
    if reaped.containers or reaped.cgroups:
        log.warning("reaped what a previous worker left in cgroup group %s: %d running container(s) "
                    "(%d process(es) killed), %d cgroup(s) removed", group, reaped.containers, reaped.processes,
                    reaped.cgroups)
    return reaped
