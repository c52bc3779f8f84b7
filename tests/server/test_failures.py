"""What happens when things go wrong: leases, retries, timeouts, cancellation, crashes."""

from __future__ import annotations

import asyncio
import time

from conftest import definition
from skylift._protocol import api


async def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_expired_lease_is_redelivered_and_a_duplicate_output_is_ignored(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        started = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"x"}],
                                                   "invocation": "async", "kind": "unary"})
        first = await h.started_container(worker)
        [inp] = await first.next_inputs()
        # The first container goes silent past its lease: it is killed and the input runs elsewhere,
        # as the same attempt (a redelivery, not a retry).
        h.advance(h.cp.settings.lease_seconds + 1)
        kill = await worker.next("stop_task")
        assert kill == {"op": "stop_task", "task_id": first.task_id, "kill": True}
        second = await h.started_container(worker)
        [again] = await second.next_inputs()
        assert again["input_id"] == inp["input_id"] and again["attempt"] == inp["attempt"] == 1
        await second.put(again, data=b"from second")
        # The first container's late output for the finished attempt changes nothing.
        await first.put(inp, data=b"from first")
        got = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": False})
        assert [o["data"] for o in got["outputs"]] == [b"from second"] and got["done"]
        info = await client.call("call.info", {"call_id": started["call_id"]})
        assert info["state"] == api.STATUS_SUCCESS and info["num_inputs"] == 1


async def test_an_input_its_container_stops_listing_is_handed_out_again(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(concurrency={"max_inputs": 2}))
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()  # say the answer was lost on its way: it never lists it
        h.advance(h.cp.settings.lease_seconds / 2 + 1)
        await container.heartbeat([])
        h.advance(h.cp.settings.lease_seconds / 2 + 1)
        await container.heartbeat([])
        [again] = await container.next_inputs()
        assert again["input_id"] == inp["input_id"] and again["attempt"] == 1
        await container.put(again, data=b"ok")
        assert (await run)["output"]["data"] == b"ok"


async def test_heartbeats_keep_a_long_input_leased(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        for _ in range(4):
            h.advance(h.cp.settings.lease_seconds / 2)
            beat = await container.heartbeat([inp["input_id"]])
            assert beat == {"cancel_input_ids": [], "stop": False}
            await asyncio.sleep(0.05)
        await worker.no_command("stop_task", within=0.1)
        await container.put(inp, data=b"ok")
        assert (await run)["output"]["data"] == b"ok"


async def test_failed_attempts_are_retried_with_backoff_and_only_the_last_output_is_delivered(platform):
    retries = {"max_retries": 2, "backoff_coefficient": 2.0, "initial_delay": 0.05, "max_delay": 1.0}
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(retries=retries))
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        container = await h.started_container(worker)
        attempts, times = [], []
        for n in range(3):
            [inp] = await container.next_inputs()
            attempts.append(inp["attempt"])
            times.append(time.monotonic())
            if n < 2:
                await container.put(inp, api.STATUS_FAILURE, exc_type="ValueError", exc_message=f"boom {n}")
            else:
                await container.put(inp, data=b"third time lucky")
        result = await run
        assert attempts == [1, 2, 3]
        assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1  # initial_delay x coefficient^n
        assert result["output"]["status"] == api.STATUS_SUCCESS and result["output"]["data"] == b"third time lucky"
        assert not run.cancelled()


async def test_retries_exhausted_deliver_the_last_failure(platform):
    retries = {"max_retries": 1, "backoff_coefficient": 1.0, "initial_delay": 0.01, "max_delay": 1.0}
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(retries=retries))
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        container = await h.started_container(worker)
        for n in range(2):
            [inp] = await container.next_inputs()
            await container.put(inp, api.STATUS_FAILURE, exc_type="ValueError", exc_message=f"boom {n}")
        output = (await run)["output"]
        assert output["status"] == api.STATUS_FAILURE and output["exc_message"] == "boom 1"


async def test_an_input_past_its_timeout_kills_the_container_and_fails(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(timeout=2))
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        h.advance(3)
        kill = await worker.next("stop_task")
        assert kill == {"op": "stop_task", "task_id": container.task_id, "kill": True}
        output = (await run)["output"]
        assert output["status"] == api.STATUS_TIMEOUT
        assert output["exc_message"] == "Function 'f' timed out after 3s (timeout=2)"
        # Its output, should it still arrive, is ignored.
        await container.put(inp, data=b"too late")


async def test_a_timed_out_attempt_is_retried_and_others_in_the_container_rerun(platform):
    retries = {"max_retries": 1, "backoff_coefficient": 1.0, "initial_delay": 0.01, "max_delay": 1.0}
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(timeout=5, retries=retries, concurrency={"max_inputs": 2}))
        slow = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"slow"},
                                                              "timeout": 10}))
        container = await h.started_container(worker)
        [inp_slow] = await container.next_inputs()
        h.advance(4)
        other = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"other"},
                                                               "timeout": 10}))
        [inp_other] = await container.next_inputs()
        h.advance(2)  # slow is now 6s in (timeout 5), other 2s
        assert (await worker.next("stop_task"))["kill"] is True
        await worker.report(container.task_id, "exited", exit_code=137)
        replacement = await h.started_container(worker)
        rerun = await replacement.next_inputs(max=2)
        by_args = {i["args"]: i for i in rerun}
        assert by_args[b"other"]["attempt"] == 1  # re-run, not a retry
        if b"slow" not in by_args:
            by_args.update({i["args"]: i for i in await replacement.next_inputs(max=2)})
        assert by_args[b"slow"]["attempt"] == 2  # the timed-out attempt's retry
        await replacement.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": "success",
                                     "data": i["args"]} for i in by_args.values()])
        assert (await slow)["output"]["data"] == b"slow"
        assert (await other)["output"]["data"] == b"other"
        assert inp_slow["input_id"] == by_args[b"slow"]["input_id"]
        assert inp_other["input_id"] == by_args[b"other"]["input_id"]


async def test_cancel_terminates_pending_inputs_and_tells_running_containers(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"max_containers": 1}))
        started = await client.call("call.start", {"function_id": ids["f"], "invocation": "sync", "kind": "map",
                                                   "inputs": [{"args": b"a"}, {"args": b"b"}, {"args": b"c"}]})
        container = await h.started_container(worker)
        [running] = await container.next_inputs(max=1)
        await client.call("call.cancel", {"call_id": started["call_id"]})
        info = await client.call("call.info", {"call_id": started["call_id"]})
        assert info["state"] == api.STATUS_TERMINATED
        got = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": True})
        assert got["done"] and len(got["outputs"]) == 3
        assert {o["status"] for o in got["outputs"]} == {api.STATUS_TERMINATED}
        beat = await container.heartbeat([running["input_id"]])
        assert beat["cancel_input_ids"] == [running["input_id"]]
        # The other inputs never reach a container.
        assert (await container.get_inputs(max=5, timeout=0.1))["inputs"] == []
        await container.put(running, data=b"ignored")


async def test_cancel_with_terminate_containers_kills_them(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        started = await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "unary",
                                                   "inputs": [{"args": b"a"}]})
        container = await h.started_container(worker)
        await container.next_inputs()
        await client.call("call.cancel", {"call_id": started["call_id"], "terminate_containers": True})
        assert await worker.next("stop_task") == {"op": "stop_task", "task_id": container.task_id, "kill": True}
        got = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"][0]["status"] == api.STATUS_TERMINATED


async def test_a_crashed_container_inputs_run_again_without_using_retries(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        crashed = await h.started_container(worker)
        [inp] = await crashed.next_inputs()
        await worker.report(crashed.task_id, "exited", exit_code=139, message="killed by signal 11")
        replacement = await h.started_container(worker)
        [again] = await replacement.next_inputs()
        assert again["input_id"] == inp["input_id"] and again["attempt"] == 1
        await replacement.put(again, data=b"ok")
        assert (await run)["output"]["data"] == b"ok"


async def test_init_failure_fails_pending_inputs_instead_of_looping(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        command = await worker.next("start_task")
        container = await h.container(command["task"])
        await container.init()
        await container.rpc.call("container.init_failed", {"error": "ModuleNotFoundError: No module named 'numpy'",
                                                           "traceback": "Traceback ..."})
        output = (await run)["output"]
        assert output["status"] == api.STATUS_INIT_FAILURE
        assert "numpy" in output["exc_message"] and output["traceback"] == "Traceback ..."
        assert (await container.get_inputs(timeout=0))["stop"] is True


async def test_containers_that_crash_before_ready_fail_the_pool_after_a_few_tries(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        for _ in range(h.cp.settings.startup_crash_limit):
            command = await worker.next("start_task")
            await worker.report(command["task"]["task_id"], "exited", exit_code=1, message="ImportError: boom")
            h.advance(h.cp.settings.crash_backoff_max)  # skip the crash-loop backoff
        output = (await run)["output"]
        assert output["status"] == api.STATUS_INIT_FAILURE and "ImportError: boom" in output["exc_message"]


async def test_a_sync_call_whose_caller_vanished_is_cancelled(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"max_containers": 1}))
        caller = await h.client()
        started = await caller.call("call.start", {"function_id": ids["f"], "invocation": "sync", "kind": "map",
                                                   "inputs": [{"args": b"a"}, {"args": b"b"}]})
        container = await h.started_container(worker)
        [running] = await container.next_inputs()
        await caller.close()
        await asyncio.sleep(0.05)
        h.advance(h.cp.settings.orphan_grace + 1)
        await _wait_for(lambda: h.cp.calls.get(started["call_id"]) is None)
        assert (await container.heartbeat([running["input_id"]]))["cancel_input_ids"] == [running["input_id"]]
        assert (await container.get_inputs(timeout=0.1))["inputs"] == []


async def test_a_lost_worker_takes_its_containers_with_it(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        started = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"x"}],
                                                   "invocation": "async", "kind": "unary"})
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await container.close()
        await worker.close()
        other = await h.worker()
        await asyncio.sleep(0.05)
        h.advance(h.cp.settings.worker_grace + 1)
        replacement = await h.started_container(other)
        [again] = await replacement.next_inputs()
        assert again["input_id"] == inp["input_id"] and again["attempt"] == 1
        await replacement.put(again, data=b"saved")
        got = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"][0]["data"] == b"saved"


async def test_an_input_failing_inside_the_platform_too_often_fails_for_good(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 30}))
        for _ in range(h.cp.settings.internal_retry_cap + 1):
            container = await h.started_container(worker)
            await container.next_inputs()
            await worker.report(container.task_id, "exited", exit_code=137, message="OOM killed")
        output = (await run)["output"]
        assert output["status"] == api.STATUS_INTERNAL_FAILURE
        assert "exited with code 137 (OOM killed)" in output["exc_message"] and "8" in output["exc_message"]


async def test_an_input_its_container_gives_up_runs_elsewhere_but_only_if_it_still_held_it(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        first = await h.started_container(worker)
        [inp] = await first.next_inputs()
        await first.put(inp, api.STATUS_TERMINATED)  # e.g. SIGTERM while running: not the user's failure
        [again] = await first.next_inputs()
        assert again["input_id"] == inp["input_id"] and again["attempt"] == 1
        h.advance(h.cp.settings.lease_seconds + 1)  # its lease lapses: a second container takes it
        second = await h.started_container(worker)
        [third] = await second.next_inputs()
        await first.put(again, api.STATUS_TERMINATED)  # no longer first's to give up
        assert (await second.heartbeat([third["input_id"]]))["cancel_input_ids"] == []
        await second.put(third, data=b"done")
        assert (await run)["output"]["data"] == b"done"
