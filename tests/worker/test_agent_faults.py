"""What the worker agent reports about a container's end, for the control plane to classify (docs/faults.md)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from test_agent import IMAGE, definition, drive
from worker_peer import ControlPlane, wait_until

from skylift.worker.agent import WorkerAgent


def _exit(plane: ControlPlane, task_id: str) -> dict[str, Any]:
    return next(e for e in plane.events if e["task_id"] == task_id and e["state"] == "exited")


def _sleeper(seconds: float) -> None:
    import time

    time.sleep(seconds)


async def _running(plane: ControlPlane, agent: WorkerAgent) -> tuple[str, int]:
    task_id = plane.start_task(definition(obj=_sleeper), "im-agent", image=IMAGE)
    await wait_until(lambda: ("running", None) in plane.events_for(task_id), what="the container to run")
    inner: Any = agent.snapshots.inner  # the process runtime: the container is its subprocess
    return task_id, int(inner._containers[task_id].process.pid)


def test_an_outside_kill_is_reported_with_its_signal_and_no_cause(tmp_path: Path) -> None:
    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        task_id, pid = await _running(plane, agent)
        os.kill(pid, signal.SIGKILL)  # not the worker's doing
        await wait_until(lambda: any(s == "exited" for s, _ in plane.events_for(task_id)), what="the exit")
        event = _exit(plane, task_id)
        assert event["exit_code"] == 128 + signal.SIGKILL and event["signal"] == signal.SIGKILL
        assert "cause" not in event

    drive(tmp_path, scenario)


def test_a_container_the_control_plane_stopped_is_reported_as_stopped(tmp_path: Path) -> None:
    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        task_id, _ = await _running(plane, agent)
        plane.command({"op": "stop_task", "task_id": task_id, "kill": True})
        await wait_until(lambda: any(s == "exited" for s, _ in plane.events_for(task_id)), what="the exit")
        event = _exit(plane, task_id)
        assert event["cause"] == "stopped" and event["signal"] == signal.SIGKILL

    drive(tmp_path, scenario)


def test_registration_lists_every_container_the_worker_has(tmp_path: Path) -> None:
    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        assert plane.registrations[0]["task_ids"] == []
        task_id, _ = await _running(plane, agent)
        await plane.restart()
        await wait_until(lambda: len(plane.registrations) >= 2, what="the worker to register again")
        assert plane.registrations[1]["task_ids"] == [task_id]
        plane.stop_tasks.add(task_id)
        await wait_until(lambda: any(s == "exited" for s, _ in plane.events_for(task_id)), what="the exit")

    drive(tmp_path, scenario)


def test_a_container_the_worker_could_not_start_is_a_start_error(tmp_path: Path) -> None:
    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        # A mount whose blob the control plane doesn't have: the worker, not the function, failed.
        mounts = [{"remote_path": "/root", "files": [{"path": "m.py", "sha256": "0" * 64, "mode": 0o644}]}]
        task_id = plane.start_task(definition(obj=_sleeper), "im-agent", mounts, image=IMAGE)
        await wait_until(lambda: any(s == "exited" for s, _ in plane.events_for(task_id)), what="the exit")
        event = _exit(plane, task_id)
        assert event["cause"] == "start_error" and "exit_code" not in event, event

    drive(tmp_path, scenario)
