"""Pre-forked spares (worker/spares.py, docs/cold-starts.md): once a template is ready, the worker has it fork the
pool's next container ahead and set it up as far as it can without a task (cgroups, network, namespaces, root
filesystem, lock-down); a request activates it. Real sandboxes on the Debian base, a preloaded interpreter as the
template, the test's stand-in control plane bound in (as test_preloaded_containers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from runtime_peer import TASK_ID, TOKEN, Peer, definition

from skylift._protocol import api
from skylift._protocol.rpc import Address
from skylift.worker.container_layout import CONTROL_DIR, RUNTIME_DIR, runtime_binds
from skylift.worker.container_runtime import SandboxRuntime
from skylift.worker.fork_server import TemplateProcess
from skylift.worker.runtime import ContainerSpec
from skylift.worker.snapshot_runtime import ENV_PRELOAD, SnapshotRuntime
from skylift.worker.spares import Spare

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(180)]

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the containers can't import this file

RECVMSG = {"x86_64": 47, "aarch64": 212}  # the syscall a waiting spare sleeps in


def inside() -> dict[str, Any]:
    import os
    import random
    import socket

    with open("/proc/self/uid_map") as f:
        uid_map = f.read().split()
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines())
    share = ""
    for path in ("/sys/fs/cgroup/cpu/cpu.shares", "/sys/fs/cgroup/cpu.weight"):  # cgroup v1, v2
        if os.path.exists(path):
            with open(path) as f:
                share = f.read().strip()
            break
    return {"pid": os.getpid(), "uid": os.getuid(), "hostname": socket.gethostname(), "uid_map": uid_map,
            "task": os.environ.get("SKYLIFT_TASK_ID"), "secret": os.environ.get("MY_SECRET"), "cwd": os.getcwd(),
            "random": random.random(), "seccomp": status["Seccomp"].strip(), "nnp": status["NoNewPrivs"].strip(),
            "cpu_share": share}


def spec(base: Path, tmp_path: Path, n: int, memory_mb: int | None = None) -> ContainerSpec:
    return ContainerSpec(
        task_id=f"{TASK_ID}{n}", argv=["/usr/bin/python3", "-m", "skylift._runtime"], cwd=Path("/root"),
        image_root=base, layers=[base], scratch=tmp_path / "tasks" / f"task{n}",
        binds=[*runtime_binds(), (tmp_path / "control", CONTROL_DIR, True)],
        resources={"memory_limit": memory_mb} if memory_mb else {},
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": RUNTIME_DIR, "PYTHONUNBUFFERED": "1", "MY_SECRET": "s",
             api.ENV_SERVER_URL: f"unix://{CONTROL_DIR}/cp.sock", api.ENV_TASK_ID: TASK_ID,
             api.ENV_TASK_TOKEN: TOKEN})


async def run_one(runtime: SnapshotRuntime, peer: Peer, cspec: ContainerSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    lines: list[str] = []
    task_id = cspec.task_id
    try:
        await runtime.start(cspec, lambda t, s, text: lines.append(text))
        profile = runtime.start_profile(task_id)
        input_id = peer.add_input()
        deadline = time.monotonic() + 60
        while input_id not in peer.outputs:
            assert time.monotonic() < deadline, f"no output; the container said: {lines}"
            await asyncio.sleep(0.02)
        peer.request_stop()
        assert await asyncio.wait_for(runtime.wait(task_id), 30) == 0, lines
        output = peer.outputs[input_id]
        assert output["status"] == api.STATUS_SUCCESS, (output, lines)
        return cloudpickle.loads(output["data"]), profile
    finally:
        if task_id in runtime.running():
            await runtime.stop(task_id, kill=True)
            await runtime.wait(task_id)


async def listening(tmp_path: Path) -> Peer:
    peer = Peer(definition(inside))
    await peer.server.listen(Address("unix", path=str(tmp_path / "control" / "cp.sock")))
    return peer


async def a_spare(runtime: SnapshotRuntime) -> tuple[TemplateProcess, Spare]:
    """The pool's template once it is ready, and the spare it made."""
    deadline = time.monotonic() + 60
    while True:
        ready = [t for t in runtime.templates.values() if t.state.value == "ready"]
        if ready and runtime.spares.has_spare(ready[0]):
            return ready[0], runtime.spares._ready[id(ready[0])]
        assert time.monotonic() < deadline, ("no spare", runtime._unusable)
        await asyncio.sleep(0.05)


def cpu_share(spare: Spare) -> str:
    cgroup = spare.sandbox._cgroup
    path = cgroup._dirs[""] / "cpu.weight" if cgroup.version == "v2" else cgroup._dir("cpu") / "cpu.shares"
    return path.read_text().strip()


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f.read().splitlines())}


async def settled(spare: Spare, timeout: float = 30.0) -> int:
    """Once the spare has set itself up (it is made in the background, at the least CPU share): the pid of its
    runtime process, pid 2 of its namespace, asleep waiting for its activation."""
    deadline = time.monotonic() + timeout
    while True:
        pids = spare.sandbox._cgroup.pids()
        with contextlib.suppress(OSError, KeyError):
            waiting = [p for p in pids if status(p)["NSpid"].split()[-1] == "2"]
            if len(pids) == 3 and waiting and status(waiting[0])["State"].startswith("S"):
                return waiting[0]
        assert time.monotonic() < deadline, f"spare {spare.spare_id} did not set itself up: {pids}"
        await asyncio.sleep(0.02)


async def gone(spare: Spare, timeout: float = 20.0) -> None:
    """The spare's processes, cgroups and state directory are gone."""
    deadline = time.monotonic() + timeout
    while spare.sandbox._cgroup.pids() or any(d.exists() for d in spare.sandbox._cgroup.join_files) \
            or (spare.sandbox.own_dir is not None and spare.sandbox.own_dir.exists()):
        assert time.monotonic() < deadline, f"spare {spare.spare_id} outlived its drop"
        await asyncio.sleep(0.05)


def test_a_spare_is_locked_down_ahead_runs_nothing_and_becomes_an_isolated_container(
        debian_base: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(ENV_PRELOAD, "all")
    (tmp_path / "control").mkdir()

    async def scenario() -> None:
        runtime = SnapshotRuntime(SandboxRuntime(tmp_path / "tasks"), tmp_path / "snapshots")
        peer = await listening(tmp_path)
        try:
            first, profile = await run_one(runtime, peer, spec(debian_base, tmp_path, 1))
            assert profile["how"] == "container"
            _, spare = await a_spare(runtime)
            calls = len(peer.calls)
            # Set up and locked down before any task: its processes (outer, init, runtime) are in its own
            # cgroup; the runtime, pid 2 of its namespace, is an unprivileged host uid under its seccomp
            # filter and no_new_privs, asleep waiting for its activation. It has not talked to anyone.
            waiting = await settled(spare)
            seen = status(waiting)
            assert seen["Seccomp"] == "2" and seen["NoNewPrivs"] == "1"
            assert int(seen["Uid"].split()[0]) == 0x70000000 and seen["State"].startswith("S")
            machine = os.uname().machine
            if machine in RECVMSG:
                with open(f"/proc/{waiting}/syscall") as f:
                    assert int(f.read().split()[0]) == RECVMSG[machine]
            assert len(peer.calls) == calls, "a spare talked to the control plane before its activation"
            assert cpu_share(spare) in ("1", "2")  # made with the least CPU share, so it can't slow others down

            second, profile = await run_one(runtime, peer, spec(debian_base, tmp_path, 2))
            assert profile["how"] == "preloaded" and profile.get("note") == "from a pre-forked spare"
            assert profile["pid"] == spare.pid
            _, refill = await a_spare(runtime)  # the next one was made while this one ran
            assert refill is not spare
            third, profile = await run_one(runtime, peer, spec(debian_base, tmp_path, 3))
            assert profile.get("note") == "from a pre-forked spare"
            # Containers like the first: uid 0 in their own pid namespace, their own hostname, environment
            # (task id and secrets arrive with the activation), working directory and lock-down; only the
            # user namespace shows the fork. Each re-seeded its randomness after activation.
            for seen_inside in (second, third):
                assert seen_inside["uid"] == 0 and seen_inside["hostname"] == "skylift" == first["hostname"]
                assert seen_inside["pid"] == 2 and seen_inside["uid_map"][:2] == ["0", str(0x70000000)]
                assert seen_inside["secret"] == "s" and seen_inside["cwd"] == "/root"
                assert seen_inside["task"] == TASK_ID
                assert (seen_inside["seccomp"], seen_inside["nnp"]) == (first["seccomp"], first["nnp"]) == ("2", "1")
            assert second["random"] != third["random"]
            assert second["cpu_share"] == third["cpu_share"] == first["cpu_share"] != ""  # its own, once activated
            await gone(spare, timeout=5)  # an activated spare's sandbox went with its container
        finally:
            templates = list(runtime.templates.values())
            await runtime.close()
            await asyncio.gather(*(t.closed(10.0) for t in templates))
            await peer.server.close()

    asyncio.run(scenario())


def test_a_spare_of_another_shape_is_dropped_and_the_last_goes_with_its_template(
        debian_base: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(ENV_PRELOAD, "all")
    (tmp_path / "control").mkdir()

    async def scenario() -> None:
        runtime = SnapshotRuntime(SandboxRuntime(tmp_path / "tasks"), tmp_path / "snapshots")
        peer = await listening(tmp_path)
        try:
            await run_one(runtime, peer, spec(debian_base, tmp_path, 1))
            template, spare = await a_spare(runtime)
            # Another memory limit: the spare's cgroup doesn't fit, so it is dropped and the container forked
            # on request.
            _, profile = await run_one(runtime, peer, spec(debian_base, tmp_path, 2, memory_mb=300))
            assert profile["how"] == "preloaded" and "note" not in profile
            await gone(spare)
            _, spare = await a_spare(runtime)  # one of the new shape
            assert spare.shape[1] == 300
            await settled(spare)
            await runtime.close()  # the template retires: its spare goes, and its sandbox with it
            await gone(spare)
            await template.closed(10.0)
            assert not any((tmp_path / "tasks").glob("sp-*")), list((tmp_path / "tasks").iterdir())
        finally:
            templates = list(runtime.templates.values())
            await runtime.close()
            await asyncio.gather(*(t.closed(10.0) for t in templates))
            await peer.server.close()

    asyncio.run(scenario())


def test_a_spare_dies_with_its_template_and_its_sandbox_is_released(
        debian_base: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(ENV_PRELOAD, "all")
    (tmp_path / "control").mkdir()

    async def scenario() -> None:
        runtime = SnapshotRuntime(SandboxRuntime(tmp_path / "tasks"), tmp_path / "snapshots")
        peer = await listening(tmp_path)
        try:
            await run_one(runtime, peer, spec(debian_base, tmp_path, 1))
            template, spare = await a_spare(runtime)
            await settled(spare)
            kill = getattr(template.process, "close", None)  # the template's sandbox: everything in it dies
            assert kill is not None
            await kill()
            await gone(spare)
            assert not runtime.spares.has_spare(template)
            # the pool goes on: its next container starts the ordinary way (a new interpreter is started)
            _, profile = await run_one(runtime, peer, spec(debian_base, tmp_path, 2))
            assert profile["how"] == "container"
        finally:
            templates = list(runtime.templates.values())
            await runtime.close()
            await asyncio.gather(*(t.closed(10.0) for t in templates))
            await peer.server.close()

    asyncio.run(scenario())
