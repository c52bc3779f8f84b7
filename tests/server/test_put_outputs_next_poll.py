"""`container.put_outputs` carrying the container's next poll (`next`): leased like `get_inputs`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from skylift._protocol import api
from skylift._protocol.rpc import RpcError


def _output(inp: dict[str, Any], data: bytes) -> dict[str, Any]:
    return {"input_id": inp["input_id"], "attempt": inp["attempt"], "status": api.STATUS_SUCCESS, "data": data}


async def test_the_answer_to_put_outputs_is_the_next_input_leased_to_the_container(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)

        def run(args: bytes) -> asyncio.Future[Any]:
            return asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": args},
                                                                  "timeout": 10}))

        first = run(b"1")
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        ride = asyncio.ensure_future(container.rpc.call("container.put_outputs", {
            "outputs": [_output(inp, b"one")], "next": {"max": 4, "timeout": 10}}))
        assert (await first)["output"]["data"] == b"one"  # the outputs are settled before the poll waits
        assert not ride.done()  # nothing queued: it waits like a get_inputs long-poll
        second = run(b"2")
        got = await ride
        assert got["stop"] is False and [i["args"] for i in got["inputs"]] == [b"2"]
        [inp2] = got["inputs"]
        task = h.cp.tasks.get(container.task_id)
        leased = h.cp.calls.inputs[inp2["input_id"]]
        assert task is not None and leased.task is task and leased.held_by == [container.task_id]

        # A container told to stop gets no input on its riding poll, just the stop.
        h.cp.dispatcher.stop_task(task, "test: scaled down")
        third = run(b"3")
        got = await container.rpc.call("container.put_outputs", {"outputs": [_output(inp2, b"two")],
                                                                  "next": {"max": 4, "timeout": 10}})
        assert got == {"inputs": [], "stop": True}
        assert (await second)["output"]["data"] == b"two"
        third.cancel()

        with pytest.raises(RpcError) as err:
            await container.rpc.call("container.put_outputs", {"outputs": [], "next": 5})
        assert "next" in err.value.message
