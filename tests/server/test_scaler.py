"""The scaling loop against a fake worker: containers start on demand and stop when idle."""

from __future__ import annotations

import asyncio

import pytest

from conftest import definition
from skylift._protocol import api
from skylift._protocol.rpc import RpcError


async def test_start_task_on_demand_then_stop_after_scaledown_window(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(env={"GREETING": "hi"},
                                                autoscaler={"scaledown_window": 10}))
        await worker.no_command("start_task")  # no traffic, no container
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"1"},
                                                             "timeout": 10}))
        command = await worker.next("start_task", timeout=1)
        spec = command["task"]
        assert spec["function_id"] == ids["f"] and spec["function_tag"] == "f"
        assert spec["server_url"] == h.cp.unix_url and spec["definition"]["tag"] == "f"
        env = spec["env"]
        assert env[api.ENV_SERVER_URL] == h.cp.unix_url and env[api.ENV_TASK_ID] == spec["task_id"]
        assert env[api.ENV_TASK_TOKEN] == spec["token"] and env[api.ENV_IS_REMOTE] == "1"
        assert env["GREETING"] == "hi"
        container = await h.container(spec)
        info = await container.start()
        assert info["task_id"] == spec["task_id"] and info["function_ids"] == ids
        [inp] = await container.next_inputs()
        await container.put(inp, data=b"ok")
        await run
        stats = await client.call("function.stats", {"function_id": ids["f"]})
        assert stats == {"backlog": 0, "num_total_runners": 1, "num_running_inputs": 0, "input_headroom": 1}
        h.advance(9)
        assert (await container.get_inputs(timeout=0.2)) == {"inputs": [], "stop": False}
        h.advance(2)
        assert (await container.get_inputs(timeout=2)) == {"inputs": [], "stop": True}
        assert (await container.heartbeat())["stop"] is True
        await worker.report(container.task_id, "exited", exit_code=0)
        await worker.no_command("start_task")


async def test_a_parked_long_poll_is_answered_with_stop(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"scaledown_window": 10}))
        await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"1"}, "timeout": 0})
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await container.put(inp)
        poll = asyncio.ensure_future(container.get_inputs(timeout=10))
        await asyncio.sleep(0.05)
        h.advance(11)
        assert await asyncio.wait_for(poll, 2) == {"inputs": [], "stop": True}


async def test_min_containers_start_without_traffic_and_stay(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        await h.app(client, definition(autoscaler={"min_containers": 2, "scaledown_window": 2}), name="warm",
                    state="deployed")
        first = await h.started_container(worker)
        second = await h.started_container(worker)
        h.advance(100)
        for container in (first, second):
            assert (await container.get_inputs(timeout=0.1))["stop"] is False
        await worker.no_command("start_task")


async def test_max_containers_caps_a_burst_and_inputs_queue(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"max_containers": 2}))
        await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "map",
                                         "inputs": [{"args": str(i).encode()} for i in range(10)]})
        # Scale-out waits for the first container to show its speed (autoscaler.py), so the burst is
        # one container, then, once it has finished nothing for a while, more: but only up to 2.
        a = await h.started_container(worker)
        await a.next_inputs()
        h.advance(1)
        b = await worker.next("start_task")
        assert a.task_id != b["task"]["task_id"]
        await worker.no_command("start_task")
        stats = await client.call("function.stats", {"function_id": ids["f"]})
        assert stats["backlog"] == 9 and stats["num_total_runners"] == 2


async def test_concurrency_slots_mean_fewer_containers(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(concurrency={"max_inputs": 4}))
        await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "map",
                                         "inputs": [{"args": b"x"}] * 6})
        # As above: one container first; once it is seen slow, enough for 6 inputs at 4 each.
        first = await h.started_container(worker)
        assert len(await first.next_inputs(max=4)) == 4
        h.advance(1)
        await worker.next("start_task")
        await worker.no_command("start_task")


async def test_buffer_containers_keep_spare_capacity_while_active(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"buffer_containers": 1}))
        await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "unary",
                                         "inputs": [{"args": b"x"}]})
        await worker.next("start_task")
        await worker.next("start_task")
        await worker.no_command("start_task")


async def test_update_autoscaler_overrides_until_the_next_deploy(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, name="svc", state="deployed")
        got = await client.call("function.update_autoscaler", {"function_id": ids["f"], "min_containers": 1})
        assert got["autoscaler"]["min_containers"] == 1 and got["autoscaler"]["scaledown_window"] == 60
        await worker.next("start_task")
        with pytest.raises(RpcError) as err:
            await client.call("function.update_autoscaler", {"function_id": ids["f"], "min_containers": -1})
        assert err.value.code == "invalid"


async def test_a_gpu_no_worker_offers_fails_fast_with_a_clear_error(platform):
    async with platform() as h:
        client = await h.client()
        await h.worker(gpus={})
        gpu = {"type": "A100", "count": 1, "fallbacks": []}  # as the SDK sends it
        _, ids = await h.app(client, definition(resources={"gpu": gpu}))
        with pytest.raises(RpcError) as err:
            await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"}, "timeout": 5})
        assert err.value.code == "resource_exhausted"
        assert "no worker offers GPU 'A100'" in err.value.message


async def test_a_gpu_function_runs_on_the_worker_with_that_gpu(platform):
    async with platform() as h:
        client = await h.client()
        cpu_worker = await h.worker()
        gpu_worker = await h.worker(gpus={"A100-80GB": 1})
        _, ids = await h.app(client, definition(resources={"gpu": "a100"}))
        await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "unary",
                                         "inputs": [{"args": b"x"}]})
        command = await gpu_worker.next("start_task")
        assert command["task"]["resources"]["gpu"] == {"type": "A100-80GB", "count": 1, "fallbacks": []}
        await cpu_worker.no_command("start_task")


async def test_pending_inputs_fail_when_the_only_gpu_worker_leaves(platform):
    async with platform() as h:
        client = await h.client()
        await h.worker()
        gpu_worker = await h.worker(gpus={"T4": 1})
        _, ids = await h.app(client, definition(resources={"gpu": "T4"}, autoscaler={"max_containers": 0}))
        started = await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "unary",
                                                   "inputs": [{"args": b"x"}]})
        await gpu_worker.close()
        await asyncio.sleep(0.05)
        await client.call("function.update_autoscaler", {"function_id": ids["f"], "max_containers": 1})
        got = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"][0]["status"] == api.STATUS_INTERNAL_FAILURE
        assert "no worker offers GPU 'T4'" in got["outputs"][0]["exc_message"]


async def test_containers_wait_for_their_image_to_be_built(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        image = {"layers": [{"step": "debian_slim", "args": {"python_version": "3.11"}, "files": []}]}
        built = await client.call("image.build", {"image": image})
        assert built["status"] == "building" and built["image_id"].startswith("im-")
        command = await worker.next("build_image")
        assert command["image_id"] == built["image_id"] and command["image"] == image
        _, ids = await h.app(client, definition(image_id=built["image_id"]))
        await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "unary",
                                         "inputs": [{"args": b"x"}]})
        await worker.no_command("start_task")
        await worker.rpc.call("worker.image_progress", {"image_id": built["image_id"], "logs": ["done"],
                                                        "status": "ready"})
        start = await worker.next("start_task")
        assert start["task"]["image_id"] == built["image_id"] and start["task"]["image"] == image


async def test_a_failed_image_fails_the_calls_waiting_for_it(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        image = {"layers": [{"step": "debian_slim", "args": {}, "files": []},
                            {"step": "pip_install", "args": {"packages": ["nope"]}, "files": []}]}
        built = await client.call("image.build", {"image": image})
        _, ids = await h.app(client, definition(image_id=built["image_id"]))
        started = await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "unary",
                                                   "inputs": [{"args": b"x"}]})
        await worker.rpc.call("worker.image_progress", {"image_id": built["image_id"], "logs": [],
                                                        "status": "failed", "error": "no package 'nope'"})
        got = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"][0]["status"] == api.STATUS_INIT_FAILURE
        assert "no package 'nope'" in got["outputs"][0]["exc_message"]


async def test_idle_containers_of_other_functions_make_room_on_a_full_worker(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker(cpu=0.25)  # room for two default containers (0.125 CPU each)
        _, ids = await h.app(client, definition("a"), definition("b"), definition("warm", autoscaler={
            "min_containers": 1}))
        warm = await h.started_container(worker)
        await client.call("call.start", {"function_id": ids["a"], "invocation": "async", "kind": "unary",
                                         "inputs": [{"args": b"x"}]})
        a = await h.started_container(worker)
        [inp] = await a.next_inputs()
        await a.put(inp)
        # The worker is full; b's input evicts the idle container of a, never the min_containers one.
        await client.call("call.start", {"function_id": ids["b"], "invocation": "async", "kind": "unary",
                                         "inputs": [{"args": b"y"}]})
        assert (await a.get_inputs(timeout=2))["stop"] is True
        assert (await warm.heartbeat())["stop"] is False
        await worker.no_command("start_task", within=0.1)
        await worker.report(a.task_id, "exited", exit_code=0)
        assert (await worker.next("start_task"))["task"]["function_tag"] == "b"


async def test_a_container_that_ignores_its_stop_is_killed_after_the_grace(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"scaledown_window": 10}))
        await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"1"}, "timeout": 0})
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await container.put(inp)
        h.advance(11)
        assert (await container.get_inputs(timeout=2))["stop"] is True
        await worker.no_command("stop_task", within=0.1)
        h.advance(h.cp.settings.stop_grace + 1)
        assert await worker.next("stop_task") == {"op": "stop_task", "task_id": container.task_id, "kill": True}


async def test_a_sandbox_is_never_evicted_as_idle(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker(cpu=0.125)  # room for one default container
        app_id, ids = await h.app(client, definition("b"))
        await client.call("sandbox.create", {"app_id": app_id, "definition": definition("sb"), "cmd": [],
                                             "timeout": 300})
        sandbox = await h.started_container(worker)  # ready, no inputs: it looks idle, but its command runs
        await client.call("call.start", {"function_id": ids["b"], "invocation": "async", "kind": "unary",
                                         "inputs": [{"args": b"y"}]})
        await worker.no_command("stop_task", within=0.3)
        task = h.cp.tasks.get(sandbox.task_id)
        assert task is not None and task.alive and not task.stop_requested, task.stop_reason if task else None
