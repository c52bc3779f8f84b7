"""Preloaded interpreters on the container runtime (SKYLIFT_PRELOAD=all, worker/snapshot_runtime.py): a pool's
first container is a bubblewrap sandbox while its interpreter starts in a sandbox beside it; the next are forked
from that interpreter and each becomes a container of its own (namespaces, cgroups, seccomp, overlay), as a
memory snapshot's forks do. Real sandboxes on the Debian base; the test's stand-in control plane is bound in."""

from __future__ import annotations

import asyncio
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
from skylift.worker.runtime import ContainerSpec
from skylift.worker.snapshot_runtime import ENV_PRELOAD, SnapshotRuntime

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(120)]

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the containers can't import this file


def inside() -> dict[str, Any]:
    import os
    import socket

    with open("/proc/self/uid_map") as f:
        uid_map = f.read().split()
    return {"pid": os.getpid(), "uid": os.getuid(), "hostname": socket.gethostname(), "uid_map": uid_map,
            "secret": os.environ.get("MY_SECRET"), "cwd": os.getcwd(),
            "can_write_root": os.access("/", os.W_OK), "etc_hostname": open("/etc/hostname").read().strip()}


def spec(base: Path, tmp_path: Path, n: int) -> ContainerSpec:
    return ContainerSpec(
        task_id=f"{TASK_ID}{n}", argv=["/usr/bin/python3", "-m", "skylift._runtime"], cwd=Path("/root"),
        image_root=base, layers=[base], scratch=tmp_path / f"task{n}",
        binds=[*runtime_binds(), (tmp_path / "control", CONTROL_DIR, True)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": RUNTIME_DIR, "PYTHONUNBUFFERED": "1", "MY_SECRET": "s",
             api.ENV_SERVER_URL: f"unix://{CONTROL_DIR}/cp.sock", api.ENV_TASK_ID: TASK_ID,
             api.ENV_TASK_TOKEN: TOKEN})


async def run_one(runtime: SnapshotRuntime, base: Path, tmp_path: Path, n: int) -> tuple[dict[str, Any], str]:
    peer = Peer(definition(inside))
    await peer.server.listen(Address("unix", path=str(tmp_path / "control" / "cp.sock")))
    lines: list[str] = []
    task_id = f"{TASK_ID}{n}"
    try:
        await runtime.start(spec(base, tmp_path, n), lambda t, s, text: lines.append(text))
        how = runtime.start_profile(task_id).get("how", "")
        input_id = peer.add_input()
        deadline = time.monotonic() + 60
        while input_id not in peer.outputs:
            assert time.monotonic() < deadline, f"no output; the container said: {lines}"
            await asyncio.sleep(0.02)
        peer.request_stop()
        assert await asyncio.wait_for(runtime.wait(task_id), 30) == 0, lines
        output = peer.outputs[input_id]
        assert output["status"] == api.STATUS_SUCCESS, (output, lines)
        return cloudpickle.loads(output["data"]), how
    finally:
        if task_id in runtime.running():
            await runtime.stop(task_id, kill=True)
            await runtime.wait(task_id)
        await peer.server.close()


def test_a_pools_next_containers_are_forked_into_containers_of_their_own(
        debian_base: Path, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(ENV_PRELOAD, "all")
    (tmp_path / "control").mkdir()

    async def scenario() -> None:
        runtime = SnapshotRuntime(SandboxRuntime(tmp_path / "tasks"), tmp_path / "snapshots")
        try:
            first, how = await run_one(runtime, debian_base, tmp_path, 1)
            assert how == "container"
            deadline = time.monotonic() + 60
            while not any(t.state.value == "ready" for t in runtime.templates.values()):
                assert runtime.templates and time.monotonic() < deadline, runtime._unusable
                await asyncio.sleep(0.05)
            second, how = await run_one(runtime, debian_base, tmp_path, 2)
            assert how == "preloaded"
            # a container as the first was: root of its own pid namespace (pid 1 its init), hostname,
            # /etc files, environment and working directory; only its user namespace shows it was forked
            for seen in (first, second):
                assert seen["uid"] == 0 and seen["hostname"] == "skylift" == seen["etc_hostname"]
                assert seen["secret"] == "s" and seen["cwd"] == "/root" and seen["can_write_root"]
            assert second["pid"] == 2 and second["uid_map"][:2] == ["0", str(0x70000000)]
            assert first["uid_map"][:2] == ["0", "0"]
        finally:
            templates = list(runtime.templates.values())
            await runtime.close()
            await asyncio.gather(*(t.closed(10.0) for t in templates))

    asyncio.run(scenario())
