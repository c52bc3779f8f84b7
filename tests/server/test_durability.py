"""Spawned calls are durable: they survive a control-plane restart."""

from __future__ import annotations

from conftest import definition
from skylift._protocol import api


async def test_a_spawned_call_is_requeued_after_a_restart_and_its_result_kept(platform):
    retries = {"max_retries": 3, "backoff_coefficient": 1.0, "initial_delay": 0.01, "max_delay": 1.0}
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(retries=retries), name="durable")
        spawned = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"a"}],
                                                   "invocation": "async", "kind": "unary"})
        mapped = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"0"}],
                                                  "invocation": "async", "kind": "map", "more_inputs": True})
        await client.call("call.put_inputs", {"call_id": mapped["call_id"], "inputs": [{"args": b"1"}, {"args": b"2"}],
                                              "start_index": 1})
        await client.call("call.close_inputs", {"call_id": mapped["call_id"], "total": 3})
        container = await h.started_container(worker)
        got = await container.next_inputs(max=10)
        by_args = {i["args"]: i for i in got}
        # One finishes before the restart, one fails once (its retry attempt must survive), the rest run.
        await container.put(by_args[b"0"], data=b"zero")
        await container.put(by_args[b"a"], api.STATUS_FAILURE, exc_type="ValueError", exc_message="flaky")
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        info = await client.call("call.info", {"call_id": spawned["call_id"]})
        assert info["state"] == "pending" and info["function_id"] == ids["f"]
        h.advance(h.cp.settings.reconnect_grace + 1)  # the old container doesn't call back
        container = await h.started_container(worker)
        inputs = await container.next_inputs(max=10)
        by_args = {i["args"]: i for i in inputs}
        assert set(by_args) == {b"a", b"1", b"2"}
        assert by_args[b"a"]["input_id"] == spawned["input_ids"][0] and by_args[b"a"]["attempt"] == 2
        await container.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": "success",
                                   "data": i["args"] * 2} for i in inputs])
        got = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 5, "clear": False})
        assert [o["data"] for o in got["outputs"]] == [b"aa"] and got["done"]
        got = await client.call("call.get_outputs", {"call_id": mapped["call_id"], "timeout": 5, "clear": False})
        assert [(o["index"], o["data"]) for o in got["outputs"]] == [(0, b"zero"), (1, b"11"), (2, b"22")]
        assert got["done"]
    async with platform() as h:
        client = await h.client()
        # Finished results are read back from the store, a page at a time.
        got = await client.call("call.get_outputs", {"call_id": mapped["call_id"], "timeout": 0, "clear": False,
                                                     "start_index": 1, "max": 1})
        assert [(o["index"], o["data"]) for o in got["outputs"]] == [(1, b"11")] and not got["done"]
        info = await client.call("call.info", {"call_id": mapped["call_id"]})
        assert info["state"] == api.STATUS_SUCCESS and info["num_inputs"] == 3
        # Deployed state survives too.
        listed = await client.call("app.list", {"environment": "main"})
        assert [a["name"] for a in listed["apps"]] == ["durable"]


async def test_results_past_their_ttl_read_as_expired(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        spawned = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"a"}],
                                                   "invocation": "async", "kind": "unary"})
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await container.put(inp, data=b"x")
        await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 5, "clear": False})
        h.cp.call_api.forget(h.cp.calls.get(spawned["call_id"]))
        assert await h.cp.db.run(h.cp.db.store.expire_calls, 1e12) == 1
        got = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 0, "clear": False})
        assert got["outputs"][0]["status"] == api.STATUS_EXPIRED and got["done"]
        assert (await client.call("call.info", {"call_id": spawned["call_id"]}))["state"] == "expired"


async def test_containers_reconnect_after_a_restart_and_absent_ones_are_written_off(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"min_containers": 2}), name="warm", state="deployed")
        first = await h.started_container(worker)
        second = await h.started_container(worker)
        worker_id = worker.worker_id
    async with platform() as h:
        worker = await h.worker(worker_id=worker_id)
        await worker.report(first.task_id, "running")
        await worker.report(second.task_id, "running")
        # The first container calls back with its old token and gets work; no new container is needed.
        back = await h.container(first.spec)
        client = await h.client()
        spawned = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"x"}],
                                                   "invocation": "async", "kind": "unary"})
        [inp] = await back.next_inputs()
        await back.put(inp, data=b"warm")
        got = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"][0]["data"] == b"warm"
        await worker.no_command("start_task")
        # The second never does: it is killed and replaced (min_containers=2).
        h.advance(h.cp.settings.reconnect_grace + 1)
        assert await worker.next("stop_task") == {"op": "stop_task", "task_id": second.task_id, "kill": True}
        await worker.report(second.task_id, "exited", exit_code=137)
        assert (await worker.next("start_task"))["task"]["function_id"] == ids["f"]
        status = await client.call("server.status", {})
        assert status["workers"][0]["n_tasks"] == 2
