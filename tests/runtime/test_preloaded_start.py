"""Preloaded interpreters (worker/snapshot_runtime.py): on the process runtime a container without a
memory snapshot is forked from an interpreter that has imported the runtime and the SDK, not the
user's code. Real processes: the worker's SnapshotRuntime over a ProcessRuntime, and the test's
stand-in control plane (runtime_peer) for the containers to talk to."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
from runtime_peer import SRC, TASK_ID, TOKEN, Peer, definition

from skylift._protocol import api
from skylift.worker.process_runtime import ProcessRuntime
from skylift.worker.runtime import ContainerSpec
from skylift.worker.snapshot_runtime import ENV_PRELOAD, SnapshotRuntime, preload_key

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the containers can't import this file


def where() -> dict[str, Any]:
    import os
    import sys

    return {"pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv[1:], "cwd": os.getcwd(),
            "task": os.environ.get("SKYLIFT_TASK_ID"), "secret": os.environ.get("MY_SECRET")}


def spec(tmp_path: Path, address: str, task_id: str, **env: str) -> ContainerSpec:
    return ContainerSpec(
        task_id=task_id, argv=[sys.executable, "-m", "skylift._runtime"], cwd=tmp_path, image_root=tmp_path,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1",
             api.ENV_SERVER_URL: address, api.ENV_TASK_ID: task_id, api.ENV_TASK_TOKEN: TOKEN, **env})


async def run_one(runtime: SnapshotRuntime, tmp_path: Path, n: int, **env: str) -> tuple[dict[str, Any], str]:
    """Start one container, give it one input, stop it: what `where()` returned and how it started."""
    peer = Peer(definition(where))
    address = str(await peer.server.listen(await _address(tmp_path, n)))
    lines: list[str] = []
    task_id = TASK_ID  # (one at a time: the stand-in control plane knows one container)
    try:
        await runtime.start(spec(tmp_path, address, task_id, **env), lambda t, s, text: lines.append(text))
        how = runtime.start_profile(task_id).get("how", "")
        [output] = await _outputs(peer, lines)
        peer.request_stop()
        assert await asyncio.wait_for(runtime.wait(task_id), 30) == 0, lines
        assert output["status"] == api.STATUS_SUCCESS, (output, lines)
        return cloudpickle.loads(output["data"]), how
    finally:
        if task_id in runtime.running():
            await runtime.stop(task_id, kill=True)
            await runtime.wait(task_id)
        await peer.server.close()


async def _address(tmp_path: Path, n: int) -> Any:
    from skylift._protocol.rpc import Address

    return Address("unix", path=str(tmp_path / "cp.sock"))  # the same server URL for each: the same key


async def _outputs(peer: Peer, lines: list[str]) -> list[dict[str, Any]]:
    input_id = peer.add_input()
    deadline = time.monotonic() + 30
    while input_id not in peer.outputs:
        assert time.monotonic() < deadline, f"no output; the container said: {lines}"
        await asyncio.sleep(0.01)
    return [peer.outputs[input_id]]


async def close(runtime: SnapshotRuntime) -> None:
    templates = list(runtime.templates.values())
    await runtime.close()
    await asyncio.gather(*(t.closed(10.0) for t in templates))  # (their processes gone before the loop is)


async def wait_for_preload(runtime: SnapshotRuntime, key: str) -> None:
    deadline = time.monotonic() + 30
    while not (key in runtime.templates and runtime.templates[key].state.value == "ready"):
        assert key in runtime.templates, runtime._unusable.get(key) or f"no interpreter {key} was started"
        assert time.monotonic() < deadline, "the preloaded interpreter never became ready"
        await asyncio.sleep(0.02)


def test_containers_after_the_first_are_forked_from_a_preloaded_interpreter(tmp_path: Path) -> None:
    async def scenario() -> None:
        runtime = SnapshotRuntime(ProcessRuntime(), tmp_path / "snapshots")
        try:
            first, how = await run_one(runtime, tmp_path, 1, MY_SECRET="one")
            assert how == "process"  # the first starts the ordinary way, its interpreter beside it
            await wait_for_preload(runtime, preload_key(spec(tmp_path, f"unix://{tmp_path}/cp.sock", TASK_ID,
                                                              MY_SECRET="one")))
            second, how = await run_one(runtime, tmp_path, 2, MY_SECRET="one")
            assert how == "preloaded"
            template = next(iter(runtime.templates.values()))
            assert second["ppid"] == template.pid and second["pid"] != first["pid"]
            # what a new process would see: its own task, environment and cwd, the runtime's argv
            assert second["task"] == TASK_ID and second["secret"] == "one"
            assert second["argv"] == first["argv"] == [] and second["cwd"] == str(tmp_path)
            # another environment is another interpreter (secrets never cross): the ordinary start again
            third, how = await run_one(runtime, tmp_path, 3, MY_SECRET="two")
            assert how == "process" and third["secret"] == "two"
        finally:
            await close(runtime)

    asyncio.run(scenario())


def test_preloading_can_be_turned_off(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(ENV_PRELOAD, "0")

    async def scenario() -> None:
        runtime = SnapshotRuntime(ProcessRuntime(), tmp_path / "snapshots")
        try:
            for n in (1, 2):
                _, how = await run_one(runtime, tmp_path, n)
                assert how == "process"
            assert not runtime.templates
        finally:
            await close(runtime)

    asyncio.run(scenario())


def test_the_preloaded_set_is_what_a_user_module_needs_and_starts_no_thread() -> None:
    # A module as users write it loads nothing after the preload (so a forked container imports only
    # the user's own code), and the preload leaves the interpreter forkable.
    code = ("import sys, threading; from skylift._runtime.template import preload; preload(); "
            "before = set(sys.modules); import skylift as modal; app = modal.App('a'); "
            "image = modal.Image.debian_slim().env({'A': '1'}); "
            "f = app.function(image=image, secrets=[modal.Secret.from_dict({'k': 'v'})])(lambda: 1); "
            "c = app.cls()(type('C', (), {'m': modal.method()(lambda self: 1)})); "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('skylift')), threading.active_count())")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": SRC}, check=True).stdout.strip()
    assert out == "[] 1", out
