"""A worker reaps, at start, the sandboxes and cgroups a previous worker of its home left (reap.py).

A worker killed with SIGKILL can leave its containers running: bubblewrap's init is pid 1 of its
namespace. The next worker of the same home kills what is left in its own cgroup group and removes
the cgroups; another home's containers on the same host are untouched.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skylift.worker.container import Sandbox, SandboxSpec
from skylift.worker.container.reap import group_dirs, reap, worker_group

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host")]

# A stand-in for a worker: starts one container in its group, says the init's pid, then waits to be killed.
WORKER = """
import asyncio, sys
from pathlib import Path
from skylift.worker.container import Sandbox, SandboxSpec

async def main():
    base, state, group = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    spec = SandboxSpec(layers=[base], command=["sleep", "600"], task_id="ta-leftover", state_dir=state,
                       cgroup_group=group)
    sandbox = await Sandbox.start(spec)
    print(sandbox.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cgroup_procs(group: str) -> list[int]:
    pids: list[int] = []
    for root in group_dirs(group):
        for d in root.iterdir() if root.is_dir() else []:
            if d.is_dir():
                pids += [int(p) for p in (d / "cgroup.procs").read_text().split()]
    return pids


def test_a_killed_workers_sandbox_is_reaped_by_the_next_worker_of_its_home(debian_base: Path, tmp_path: Path) -> None:
    asyncio.run(_scenario(debian_base, tmp_path))


async def _scenario(debian_base: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    group = worker_group(home)
    other_group = worker_group(tmp_path / "another-home")
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(debian_base), str(tmp_path / "leftover"), group],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    other = await Sandbox.start(SandboxSpec(layers=[debian_base], command=["sleep", "600"], task_id="ta-neighbour",
                                            state_dir=tmp_path / "neighbour", cgroup_group=other_group))
    try:
        assert worker.stdout is not None
        init_pid = int(await asyncio.to_thread(worker.stdout.readline))
        assert _alive(init_pid) and _cgroup_procs(group)
        os.kill(worker.pid, signal.SIGKILL)  # the worker dies; its container may well go on
        worker.wait()
        reaped = reap(group)
        assert reaped.cgroups >= 1
        deadline = time.monotonic() + 10
        while _alive(init_pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not _alive(init_pid), "the leftover sandbox's init survived the reaping"
        assert not any(root.exists() for root in group_dirs(group)), "the leftover cgroups were not removed"
        assert _alive(other.pid), "a container of another home was touched"
        assert _cgroup_procs(other_group)
        assert reap(group).cgroups == 0  # nothing left the second time
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()
        await other.close()
        reap(group)
        reap(other_group)
        subprocess.run(["umount", "-R", str(tmp_path / "leftover" / "rootfs")], capture_output=True)


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path) + "/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]


def test_server_stops_reaper_releases_a_killed_workers_mounts_too(debian_base: Path, tmp_path: Path) -> None:
    # What `skylift server stop` runs after it had to kill its worker: the containers' processes
    # go, and so do their overlay roots under the home's tasks/ (they stayed mounted before).
    home = tmp_path / "home"
    state = home / "tasks" / "ta-leftover" / "sandbox"
    state.parent.mkdir(parents=True)
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(debian_base), str(state), worker_group(home)],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert worker.stdout is not None
        init_pid = int(worker.stdout.readline())
        assert _mounts_below(home / "tasks")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        subprocess.run([sys.executable, "-m", "skylift.worker", "--reap-only", "--home", str(home)], check=True,
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 10
        while _alive(init_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(init_pid)
        assert _mounts_below(home / "tasks") == []
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()
        reap(worker_group(home))
        subprocess.run(["umount", "-R", str(state / "rootfs")], capture_output=True)
