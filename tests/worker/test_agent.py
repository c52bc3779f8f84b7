"""The worker agent end to end: commands from a stand-in control plane, real images and containers."""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cloudpickle
from worker_peer import ADMIN_TOKEN, ControlPlane, wait_until

from skylift.worker.agent import WorkerAgent

SERIES = "{}.{}".format(*sys.version_info[:2])
IMAGE = {"layers": [{"step": "debian_slim", "args": {"python_version": SERIES}, "files": [], "force_build": False},
                    {"step": "env", "args": {"vars": {"FROM_IMAGE": "yes"}}, "files": [], "force_build": False}]}
USER_MODULE = b"""
import os
def handler(x):
    print(f"handling {x}", flush=True)
    return {"double": 2 * x, "env": os.environ.get("FROM_IMAGE"), "cwd": os.getcwd()}
def sleeper(seconds):
    import time
    time.sleep(seconds)
"""


def definition(module: str | None = None, qualname: str = "handler", obj: Any = None) -> dict[str, Any]:
    return {"tag": "f", "module": module, "qualname": qualname,
            "serialized": cloudpickle.dumps(obj) if obj is not None else None, "is_class": False, "methods": {},
            "is_generator": False, "image_id": "im-agent", "mounts": [], "resources": {}, "timeout": 60,
            "concurrency": None, "batching": None, "single_use_containers": False, "env": {}}


Scenario = Callable[[ControlPlane, WorkerAgent], Awaitable[None]]


def drive(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        plane = ControlPlane(tmp_path / "cp.sock")
        await plane.start()
        agent = WorkerAgent(plane.url, ADMIN_TOKEN, tmp_path / "home", stop_grace=5, gpus=[])
        running = asyncio.get_running_loop().create_task(agent.run())
        try:
            await asyncio.wait_for(agent.registered.wait(), 30)
            await scenario(plane, agent)
        finally:
            agent.stop()
            await asyncio.wait_for(running, 30)
            await plane.close()

    asyncio.run(main())


def test_build_image_then_run_a_task_from_mounted_source(tmp_path: Path) -> None:
    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        assert plane.registrations[0]["runtimes"] == ["process"]
        assert plane.registrations[0]["resources"]["cpu"] >= 1
        plane.command({"op": "build_image", "image_id": "im-agent", "image": IMAGE})
        await wait_until(lambda: any(p.get("status") for p in plane.progress), what="the build to finish")
        final = plane.progress[-1]
        assert final["status"] == "ready", final
        assert any("debian_slim" in line for p in plane.progress for line in p["logs"])

        source = plane.add_blob(USER_MODULE)
        mounts = [{"remote_path": "/root", "files": [{"path": "user_mod.py", "sha256": source, "mode": 0o644}]}]
        task_id = plane.start_task(definition("user_mod"), "im-agent", mounts)
        input_id = plane.add_input(task_id, 21)
        await wait_until(lambda: input_id in plane.outputs, what="the output")
        result = pickle.loads(plane.outputs[input_id]["data"])
        assert result["double"] == 42 and result["env"] == "yes"
        assert result["cwd"].endswith("/root")  # the mounted source is the working directory
        await wait_until(lambda: "handling 21" in plane.log_text(task_id, "stdout"), what="the container's print")

        plane.stop_tasks.add(task_id)
        await wait_until(lambda: ("exited", 0) in plane.events_for(task_id), what="the exit report")
        assert plane.events_for(task_id)[0] == ("running", None)
        assert any("container started" in text for text in plane.log_text(task_id, "system"))
        assert task_id not in agent.tasks

    drive(tmp_path, scenario)


def test_start_task_builds_a_missing_image_it_is_given(tmp_path: Path) -> None:
    def add_one(x: int) -> int:
        return x + 1

    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        task_id = plane.start_task(definition(obj=add_one), "im-fresh", image=IMAGE)
        input_id = plane.add_input(task_id, 1)
        await wait_until(lambda: input_id in plane.outputs, what="the output")
        assert pickle.loads(plane.outputs[input_id]["data"]) == 2
        assert any("building image im-fresh" in text for text in plane.log_text(task_id, "system"))
        plane.stop_tasks.add(task_id)
        await wait_until(lambda: ("exited", 0) in plane.events_for(task_id), what="the exit report")

    drive(tmp_path, scenario)


def test_unknown_image_fails_the_task_with_a_clear_message(tmp_path: Path) -> None:
    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        task_id = plane.start_task(definition("user_mod"), "im-nowhere")
        await wait_until(lambda: plane.events_for(task_id), what="the failure report")
        [event] = [e for e in plane.events if e["task_id"] == task_id]
        assert event["state"] == "exited" and "im-nowhere is not built on this worker" in event["message"]

    drive(tmp_path, scenario)


def test_failed_build_reports_the_step_and_output(tmp_path: Path) -> None:
    broken = {"layers": [*IMAGE["layers"], {"step": "run_commands", "args": {"commands": ["echo nope; exit 7"]},
                                            "files": [], "force_build": False}]}

    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        plane.command({"op": "build_image", "image_id": "im-broken", "image": broken})
        await wait_until(lambda: any(p.get("status") for p in plane.progress), what="the build to finish")
        final = plane.progress[-1]
        assert final["status"] == "failed"
        assert "exited with code 7" in final["error"] and "nope" in final["error"]

    drive(tmp_path, scenario)


def test_stop_task_with_kill(tmp_path: Path) -> None:
    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        plane.command({"op": "build_image", "image_id": "im-agent", "image": IMAGE})
        source = plane.add_blob(USER_MODULE)
        mounts = [{"remote_path": "/root", "files": [{"path": "user_mod.py", "sha256": source, "mode": 0o644}]}]
        task_id = plane.start_task(definition("user_mod", "sleeper"), "im-agent", mounts)
        plane.add_input(task_id, 60)
        await wait_until(lambda: ("running", None) in plane.events_for(task_id), what="the container to run")
        await wait_until(lambda: not plane.inputs[task_id], what="the input to be leased")
        plane.command({"op": "stop_task", "task_id": task_id, "kill": True})
        await wait_until(lambda: any(s == "exited" for s, _ in plane.events_for(task_id)), what="the exit")
        assert ("exited", 137) in plane.events_for(task_id)

    drive(tmp_path, scenario)


def test_reconnects_after_a_control_plane_restart_and_keeps_containers(tmp_path: Path) -> None:
    def echo(x: int) -> int:
        return x

    async def scenario(plane: ControlPlane, agent: WorkerAgent) -> None:
        task_id = plane.start_task(definition(obj=echo), "im-agent", image=IMAGE)
        await wait_until(lambda: ("running", None) in plane.events_for(task_id), what="the container to run")
        await plane.restart()
        await wait_until(lambda: len(plane.registrations) >= 2, what="the worker to register again")
        assert plane.registrations[1]["worker_id"] == "wo-test"
        assert plane.hellos[-1].get("worker_id") == "wo-test" or any(
            h.get("worker_id") == "wo-test" for h in plane.hellos[1:])
        await wait_until(lambda: plane.events_for(task_id).count(("running", None)) == 2,
                         what="the running container to be announced again")
        # The container reconnected too and still serves inputs.
        input_id = plane.add_input(task_id, 5)
        await wait_until(lambda: input_id in plane.outputs, what="an output after the restart")
        plane.stop_tasks.add(task_id)
        await wait_until(lambda: ("exited", 0) in plane.events_for(task_id), what="the exit report")

    drive(tmp_path, scenario)


def test_a_worker_whose_launcher_died_before_it_started_still_exits(tmp_path: Path) -> None:
    # The race the chaos suite's restarts hit: a control plane killed right after starting its worker
    # leaves one whose parent, read at start, is already init; the launcher's pid is passed instead.
    import subprocess

    launcher = subprocess.Popen([sys.executable, "-c", "pass"])
    launcher.wait()

    async def main() -> None:
        plane = ControlPlane(tmp_path / "cp.sock")
        await plane.start()
        agent = WorkerAgent(plane.url, ADMIN_TOKEN, tmp_path / "home", stop_grace=5, gpus=[])
        agent.exit_with_parent = True
        agent.parent_pid = launcher.pid
        try:
            await asyncio.wait_for(agent.run(), 30)  # returns on its own: its launcher is gone
        finally:
            await plane.close()

    asyncio.run(main())
