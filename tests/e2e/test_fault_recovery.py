"""Faults on the real platform (docs/faults.md): issue 9's findings 4 and 5, end to end.

* containers SIGKILLed from outside while they boot, several at once and more times than the crash
  limit, fail neither a map nor spawned calls;
* a deployed function whose import fails fails `.remote()` but its spawned calls wait and run on
  the fixed deploy;
* `kill -9` of the worker while its containers boot: the map completes, the control plane writes
  the worker's containers off the moment the supervisor sees it exit, and the restarted worker
  reaps the sandboxes the dead one left.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from apps import faults
from pool_helpers import call, containers, stop_all

import skylift as modal
from skylift.exception import ExecutionError
from skylift.testing import local_platform

BOOTING = ("starting", "running")  # not ready yet: @enter still runs


def _runtime_pids(task_ids: set[str]) -> dict[str, int]:
    """The container process of each task, as the host sees it.

    A new interpreter (`python -m skylift._runtime`) carries its task id in its environment. A container
    forked from a template (a preloaded interpreter, the default on both runtimes, or a memory snapshot)
    has the template's environment and command line, so it is found by the pid the worker reported for
    it: the template's child, numbered in the template's pid namespace (a sandboxed template's own).
    """
    forked = {int(t["pid"]): t["task_id"] for t in call("task.list", {"environment": "main"})["tasks"]
              if t["task_id"] in task_ids and t.get("start") in ("fork", "preloaded") and t.get("pid")}
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"skylift._runtime" not in cmdline:
            continue
        if b"--template" in cmdline:
            task_id = _forked_task(int(entry.name), forked)
            if task_id is not None:
                found[task_id] = int(entry.name)
            continue
        for item in environ:
            if item.startswith(b"SKYLIFT_TASK_ID="):
                task_id = item.split(b"=", 1)[1].decode()
                if task_id in task_ids:
                    found[task_id] = int(entry.name)
    return found


def _forked_task(pid: int, forked: dict[int, str]) -> str | None:
    """The task whose container `pid` is: a child of a template, in the template's pid namespace, whose pid
    there is the one the worker reported (a container's own init and runtime are in a namespace below)."""
    status = _status(pid)
    parent = int(status.get("PPid", "0"))
    nspids = status.get("NSpid", "").split()
    if not nspids or b"--template" not in _cmdline(parent):
        return None
    if len(_status(parent).get("NSpid", "").split()) != len(nspids):  # not the template's own namespace
        return None
    return forked.get(int(nspids[-1]))


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _booting_pids(tag: str, timeout: float = 60.0) -> dict[str, int]:
    """Runtime pids of the pool's containers that are up but not ready; waits until there are some."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        booting = {t["task_id"] for t in containers(tag) if t["state"] in BOOTING}
        pids = _runtime_pids(booting) if booting else {}
        if pids:
            return pids
        time.sleep(0.02)
    raise AssertionError(f"no container of {tag} was booting within {timeout}s")


def _wait_gone(pids: dict[str, int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in pids.values()):
        assert time.monotonic() < deadline, f"killed containers {pids} did not go"
        time.sleep(0.02)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def _in_background(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _result(thread: threading.Thread, box: dict[str, Any], timeout: float = 180.0) -> Any:
    thread.join(timeout)
    assert not thread.is_alive(), "the map did not finish"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.skipif(os.geteuid() != 0, reason="reads other processes' environment to find containers (root)")
def test_outside_kills_during_cold_starts_fail_neither_a_map_nor_spawned_calls(platform: object) -> None:
    with faults.app.run():
        booter = faults.SlowBoot()
        thread, box = _in_background(lambda: list(booter.double.map(range(40))))
        spawned = [booter.double.spawn(1000 + i) for i in range(5)]
        rounds = 0
        for _ in range(3):  # as many rounds as the crash limit, each killing every booting container at once
            pids = _booting_pids("SlowBoot")
            for pid in pids.values():
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pids)
            rounds += 1
        assert _result(thread, box) == [2 * i for i in range(40)]
        assert [c.get(timeout=120) for c in spawned] == [2 * (1000 + i) for i in range(5)]
        assert rounds == 3


def test_a_deployed_function_that_cannot_import_keeps_its_spawned_calls_for_the_fixed_deploy(
        platform: object) -> None:
    from apps import fixable_v1, fixable_v2

    fixable_v1.app.deploy()
    work = modal.Function.from_name("e2e-fixable", "work")
    spawned = work.spawn(7)
    with pytest.raises(ExecutionError, match="version 1 refuses to import"):
        work.remote(1)
    with pytest.raises(TimeoutError):
        spawned.get(timeout=2)  # it waits: neither failed nor run
    fixable_v2.app.deploy()
    assert spawned.get(timeout=120) == "v2:7"
    assert modal.Function.from_name("e2e-fixable", "work").remote(2) == "v2:2"


def _worker_pid(control_plane_pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == control_plane_pid and b"skylift.worker" in cmdline:
            return int(entry.name)
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="reads other processes' environment to find containers (root)")
def test_kill_9_of_the_worker_while_containers_boot_does_not_fail_the_map(tmp_path: Path) -> None:
    with local_platform(tmp_path / "home") as platform, faults.app.run():
        booter = faults.SlowBoot()
        assert booter.double.remote(1) == 2  # the image is built; the next containers boot from it
        stop_all("SlowBoot")  # the map's containers are cold
        thread, box = _in_background(lambda: list(booter.double.map(range(200))))
        doomed = _booting_pids("SlowBoot")
        worker = _worker_pid(platform.pid)
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        assert _result(thread, box) == [2 * i for i in range(200)]
        left = {t["task_id"] for t in containers("SlowBoot")}
        assert not left & set(doomed), "the dead worker's containers are still counted"
        log = platform.log
        assert "the worker agent process exited" in log, log[-3000:]
        # The restarted worker of the same home killed the dead one's sandboxes (if they outlived it).
        deadline = time.monotonic() + 30
        while any(_state(pid) not in ("X", "Z") for pid in doomed.values()):
            assert time.monotonic() < deadline, "the dead worker's containers were not reaped"
            time.sleep(0.05)


@pytest.mark.skipif(os.geteuid() != 0, reason="the container runtime's sandboxes and cgroups (root)")
def test_server_stop_leaves_no_sandbox_or_cgroup_behind(tmp_path: Path) -> None:
    from skylift.worker.container.reap import group_dirs, worker_group

    home = tmp_path / "home"
    with local_platform(home), faults.app.run():
        faults.stubborn.spawn(600)
        deadline = time.monotonic() + 120
        pids: dict[str, int] = {}
        while not pids:
            assert time.monotonic() < deadline, "the stubborn container did not start"
            running = {t["task_id"] for t in containers("stubborn") if t["running_inputs"]}
            pids = _runtime_pids(running) if running else {}
            time.sleep(0.05)
        runtimes = {r for w in call("server.status", {})["workers"] for r in w["runtimes"]}
        if "container" not in runtimes:
            pytest.skip(f"the worker runs {sorted(runtimes)}, not the container runtime")
        assert any(d.exists() for d in group_dirs(worker_group(home)))
    # `server stop` (what leaving local_platform does): the worker had to be killed, its sandbox reaped.
    for pid in pids.values():
        assert _state(pid) in ("X", "Z"), f"container process {pid} outlived `server stop`"
    assert not any(d.exists() for d in group_dirs(worker_group(home))), "cgroups outlived `server stop`"
