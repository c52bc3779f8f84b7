"""Warm pools, cold-start profiles and the task.* methods, against the real control plane.

Containers here are `FakeContainer`s: the control plane can't tell them from real ones.
"""

from __future__ import annotations

import asyncio

import pytest

from conftest import definition
from skylift._protocol import api
from skylift._protocol.rpc import RpcError
from skylift.server.execution.profiles import ColdStart


async def test_min_containers_start_without_traffic_and_show_in_task_list(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        app_id, ids = await h.app(client, definition(autoscaler={"min_containers": 2}), name="warm")
        first = await h.started_container(worker)
        second = await h.started_container(worker)
        await worker.no_command("start_task")
        tasks = (await client.call("task.list", {"environment": "main"}))["tasks"]
        assert {t["task_id"] for t in tasks} == {first.task_id, second.task_id}
        assert all(t["app_id"] == app_id and t["function_tag"] == "f" and t["state"] == "ready" for t in tasks)
        assert all(t["idle"] is not None and t["running_inputs"] == 0 for t in tasks)
        apps = (await client.call("app.list", {"environment": "main"}))["apps"]
        assert next(a for a in apps if a["app_id"] == app_id)["n_containers"] == 2
        stats = await client.call("function.stats", {"function_id": ids["f"]})
        assert stats["num_total_runners"] == 2 and stats["backlog"] == 0


async def test_a_redeploy_resets_update_autoscaler_even_when_nothing_changed(platform):
    async with platform() as h:
        client = await h.client()
        await h.worker()
        _, ids = await h.app(client, name="svc", state="deployed")
        got = await client.call("function.update_autoscaler", {"function_id": ids["f"], "min_containers": 0,
                                                               "scaledown_window": 5})
        assert got["autoscaler"]["scaledown_window"] == 5
        _, again = await h.app(client, name="svc", state="deployed")  # the same definition
        assert again == ids
        got = await client.call("function.update_autoscaler", {"function_id": ids["f"]})
        assert got["autoscaler"]["scaledown_window"] == api.DEFAULT_SCALEDOWN_WINDOW


async def test_task_stop_drains_a_container_and_nothing_replaces_it(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 5}))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await container.put(inp, data=b"y")
        assert (await run)["output"]["data"] == b"y"
        await client.call("task.stop", {"task_id": container.task_id})
        assert (await container.get_inputs(timeout=1))["stop"] is True
        await worker.no_command("start_task")
        with pytest.raises(RpcError) as err:
            await client.call("task.stop", {"task_id": "ta-nope"})
        assert err.value.code == "not_found"


async def test_cold_start_profile_is_logged_once_complete(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        app_id, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 5}))
        command = await worker.next("start_task")
        task_id = command["task"]["task_id"]
        container = await h.container(command["task"])
        await container.init()
        # The container can be ready before the worker reports (a fork is that quick).
        saved = {"import_ms": 300.0, "snap_hooks_ms": 250.0}
        await container.rpc.call("container.ready", {"profile": {"how": "fork", "fork_ms": 2.0, "connect_ms": 1.0,
                                                                 "enter_ms": 0.5, "snapshot": saved}})
        [inp] = await container.next_inputs()
        await worker.rpc.call("worker.report", {"events": [{"task_id": task_id, "state": "running", "profile": {
            "how": "fork", "image_ms": 0.5, "start_ms": 3.0, "pid": 1234}}]})
        await container.put(inp, data=b"y")
        await run
        got = (await client.call("task.get", {"task_id": task_id}))["task"]
        profile = got["profile"]
        assert got["start"] == "fork" and got["pid"] == 1234 and got["cold_start_ms"] is not None
        assert [label for label, _ in profile["phases"]] == ["image", "fork", "connect", "snap=False hooks",
                                                             "first input", "other"]
        assert dict(profile["phases"])["fork"] == 2.0  # the child's own measure: fork() until it is set up
        assert profile["saved"] == {"import_ms": 300.0, "snap_hooks_ms": 250.0}
        logs = (await client.call("task.logs", {"task_id": task_id, "after_seq": 0, "timeout": 5}))["entries"]
        lines = [e["text"] for e in logs if e["text"].startswith("cold start")]
        assert len(lines) == 1 and "forked from a memory snapshot" in lines[0]
        assert "the snapshot saved imports 300 ms + snap=True hooks 250 ms" in lines[0]
        assert app_id


async def test_task_exec_is_relayed_to_the_worker(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"min_containers": 1}))
        container = await h.started_container(worker)

        async def answer() -> None:
            command = await worker.next("exec_task")
            assert command["argv"] == ["echo", "hi"] and command["task_id"] == container.task_id
            await worker.rpc.call("worker.exec_result", {"exec_id": command["exec_id"], "exit_code": 3,
                                                         "output": "hi\n"})

        answering = asyncio.ensure_future(answer())
        got = await client.call("task.exec", {"task_id": container.task_id, "argv": ["echo", "hi"], "timeout": 5})
        await answering
        assert got == {"exit_code": 3, "output": "hi\n", "truncated": False}
        with pytest.raises(RpcError) as err:
            await client.call("task.exec", {"task_id": container.task_id, "argv": []})
        assert err.value.code == "invalid"
        assert ids


def test_a_process_start_profile_names_every_phase() -> None:
    profile = ColdStart(created_at=10.0)
    profile.on_worker({"how": "process", "image_ms": 1.0, "start_ms": 5.0, "bogus": "x"})
    profile.on_ready({"how": "process", "boot_ms": 40.0, "connect_ms": 2.0, "import_ms": 300.0,
                      "snap_hooks_ms": 250.0, "enter_ms": 1.0}, now=10.6, inputs_waiting=False)
    assert profile.complete and not profile.forked
    assert [label for label, _ in profile.phases()] == ["image", "process start", "boot", "connect", "imports",
                                                         "snap=True hooks", "enter hooks", "other"]
    assert sum(ms for _, ms in profile.phases()) == pytest.approx(600.0)
    assert profile.line().startswith("container ready in 600 ms, waiting for inputs: image 1.0 ms")


async def test_min_containers_warm_the_pool_cls_would_use(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        required = definition("Needs", is_class=True, parameters=["size"], default_params=None,
                              autoscaler={"min_containers": 1})
        defaulted = definition("Defaults", is_class=True, parameters=["size"], default_params=b"size=1",
                               autoscaler={"min_containers": 1})
        _, ids = await h.app(client, required, defaulted)
        command = await worker.next("start_task")
        assert command["task"]["function_tag"] == "Defaults" and command["task"]["params"] == b"size=1"
        await worker.no_command("start_task")  # nothing to warm for Needs until a parameter set is called
        await client.call("call.start", {"function_id": ids["Needs"], "params": b"size=2", "invocation": "async",
                                         "kind": "unary", "inputs": [{"args": b"x", "method": "run"}]})
        command = await worker.next("start_task")
        assert command["task"]["function_tag"] == "Needs" and command["task"]["params"] == b"size=2"
