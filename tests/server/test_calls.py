"""Calls end to end: client -> queue -> container -> client, through a real control plane."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import definition
from skylift._protocol import api
from skylift._protocol.rpc import RpcError


async def test_unary_call_flows_from_client_to_container_and_back(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"21"},
                                                             "timeout": 10}))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        assert inp["args"] == b"21" and inp["attempt"] == 1 and inp["index"] == 0 and inp["kind"] == "unary"
        await container.put(inp, data=b"42")
        result = await run
        assert result["output"]["status"] == api.STATUS_SUCCESS
        assert result["output"]["data"] == b"42"
        assert result["output"]["input_id"] == inp["input_id"]
        # The warm container takes the next call without a new start_task.
        serving = asyncio.ensure_future(container.serve(lambda args: args + b"!"))
        again = await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"}, "timeout": 10})
        assert again["output"]["data"] == b"x!"
        await worker.no_command("start_task")
        serving.cancel()


async def test_call_run_without_output_in_time_is_collected_with_get_outputs(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        result = await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"1"}, "timeout": 0.05})
        assert "output" not in result
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await container.put(inp, data=b"done")
        got = await client.call("call.get_outputs", {"call_id": result["call_id"], "timeout": 5, "clear": True})
        assert [o["data"] for o in got["outputs"]] == [b"done"]
        assert got["done"]


async def test_map_streams_inputs_and_batches_outputs_with_their_index(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        started = await client.call("call.start", {
            "function_id": ids["f"], "inputs": [{"args": b"0"}, {"args": b"1"}], "invocation": "sync",
            "kind": "map", "more_inputs": True})
        call_id = started["call_id"]
        more = await client.call("call.put_inputs", {"call_id": call_id, "start_index": 2,
                                                      "inputs": [{"args": b"2"}, {"args": b"3"}, {"args": b"4"}]})
        assert len(set(started["input_ids"] + more["input_ids"])) == 5
        # A retried batch (same start_index) is not added twice.
        again = await client.call("call.put_inputs", {"call_id": call_id, "start_index": 2,
                                                       "inputs": [{"args": b"2"}, {"args": b"3"}, {"args": b"4"}]})
        assert again["input_ids"] == more["input_ids"]
        await client.call("call.close_inputs", {"call_id": call_id, "total": 5})
        container = await h.started_container(worker)
        inputs = await container.next_inputs(max=10)
        assert [i["index"] for i in inputs] == [0, 1, 2, 3, 4]
        # Outputs come back in any order, in batches; each carries its index.
        await container.put_many([{"input_id": i["input_id"], "attempt": 1, "status": "success",
                                   "data": i["args"] * 2} for i in reversed(inputs)])
        got = await client.call("call.get_outputs", {"call_id": call_id, "timeout": 5, "clear": True, "max": 3})
        assert len(got["outputs"]) == 3 and not got["done"]
        rest = await client.call("call.get_outputs", {"call_id": call_id, "timeout": 5, "clear": True})
        assert rest["done"]
        outputs = got["outputs"] + rest["outputs"]
        assert sorted((o["index"], o["data"]) for o in outputs) == [(n, str(n).encode() * 2) for n in range(5)]


async def test_map_of_many_inputs_completes(platform):
    n = 5000
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        items = [{"args": str(i).encode()} for i in range(n)]
        started = await client.call("call.start", {"function_id": ids["f"], "inputs": items[:1000],
                                                   "invocation": "sync", "kind": "map", "more_inputs": True})
        call_id = started["call_id"]
        container = await h.started_container(worker)
        serving = asyncio.ensure_future(container.serve(lambda args: args, max=500))
        t0 = time.perf_counter()
        for start in range(1000, n, 1000):
            await client.call("call.put_inputs", {"call_id": call_id, "inputs": items[start:start + 1000],
                                                  "start_index": start})
        await client.call("call.close_inputs", {"call_id": call_id, "total": n})
        seen: set[int] = set()
        done = False
        while not done:
            got = await client.call("call.get_outputs", {"call_id": call_id, "timeout": 5, "clear": True})
            seen.update(o["index"] for o in got["outputs"])
            done = got["done"]
        elapsed = time.perf_counter() - t0
        assert seen == set(range(n))
        print(f"map of {n} inputs through one fake container: {n / elapsed:,.0f} inputs/s")
        serving.cancel()


async def test_generator_items_stream_then_final_output(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition("g", is_generator=True))
        started = await client.call("call.start", {"function_id": ids["g"], "inputs": [{"args": b"3"}],
                                                   "invocation": "sync", "kind": "generator"})
        call_id = started["call_id"]
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        assert inp["kind"] == "generator"
        reader = asyncio.ensure_future(client.call("call.get_gen_items", {"call_id": call_id, "start": 0,
                                                                          "timeout": 5}))
        await container.rpc.call("container.put_gen_items", {"input_id": inp["input_id"], "attempt": 1, "start": 0,
                                                             "items": [b"a", b"b"]})
        first = await reader
        assert first["items"] == [b"a", b"b"] and first["next"] == 2 and not first["done"]
        # A resent batch overlapping what arrived is not duplicated.
        await container.rpc.call("container.put_gen_items", {"input_id": inp["input_id"], "attempt": 1, "start": 1,
                                                             "items": [b"b", b"c"]})
        await container.put(inp)
        last = await client.call("call.get_gen_items", {"call_id": call_id, "start": 2, "timeout": 5})
        assert last["items"] == [b"c"] and last["done"]
        assert last["output"]["status"] == api.STATUS_SUCCESS


async def test_start_validates_the_request(platform):
    async with platform() as h:
        client = await h.client()
        _, ids = await h.app(client)
        with pytest.raises(RpcError) as err:
            await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": "not bytes"}],
                                             "invocation": "sync", "kind": "unary"})
        assert err.value.code == "invalid" and "inputs[0]" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b""}], "kind": "bogus"})
        assert err.value.code == "invalid" and "'kind'" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("call.start", {"function_id": "fu-nope", "inputs": [{"args": b""}]})
        assert err.value.code == "not_found" and "fu-nope" in err.value.message
