"""The scaling loop's observations (drain rate, cold start) steer scale-out, against a fake worker.

The harness's fake clock stands still unless a test moves it, so a test decides exactly how long
the container took to start and how long it took over its inputs.
"""

from __future__ import annotations

import pytest

from conftest import definition


async def map_of(client, function_id: str, n: int) -> None:  # type: ignore[no-untyped-def]
    await client.call("call.start", {"function_id": function_id, "invocation": "async", "kind": "map",
                                     "inputs": [{"args": str(i).encode()} for i in range(n)]})


async def start_after(h, worker, cold_start: float):  # type: ignore[no-untyped-def]
    command = await worker.next("start_task")
    h.advance(cold_start)
    await worker.report(command["task"]["task_id"], "running")
    container = await h.container(command["task"])
    await container.start()
    # Sample the pool now, so what the container does next falls in the interval it was ready for
    # (the loop's own next tick may come only after the test moved the clock).
    h.cp.scaler.tick()
    return container


async def test_a_queue_drained_before_a_new_container_could_start_gets_none(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        await map_of(client, ids["f"], 200)
        container = await start_after(h, worker, 0.5)  # the pool's containers take 0.5 s to start
        await worker.no_command("start_task", within=0.1)  # nothing measured yet: one at a time
        inputs = await container.next_inputs(max=20)
        await container.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": "success"}
                                  for i in inputs])
        h.advance(0.1)  # 20 inputs in 0.1 s: the other 180 are gone in 0.9 s, well before...
        await worker.no_command("start_task", within=0.2)
        h.advance(0.5)  # ... and what it drains keeps it so (0 completed over 0.5 s more would not)
        inputs = await container.next_inputs(max=100)
        await container.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": "success"}
                                  for i in inputs])
        await worker.no_command("start_task", within=0.2)


async def test_a_container_that_finishes_nothing_gets_company_up_to_the_demand(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client, definition(concurrency={"max_inputs": 2}))
        await map_of(client, ids["f"], 7)  # four containers' worth
        first = await start_after(h, worker, 0.2)
        assert len(await first.next_inputs(max=2)) == 2
        await worker.no_command("start_task", within=0.1)
        h.advance(0.3)  # 0.3 s with no output: slow inputs, 5 queued
        await start_after(h, worker, 0.2)
        # Two ready and still nothing done: they may double, to the four that 7 inputs need with 2 slots
        # each, and no further.
        await start_after(h, worker, 0.2)
        await start_after(h, worker, 0.2)
        await worker.no_command("start_task", within=0.2)


async def serve(container, n: int) -> None:  # type: ignore[no-untyped-def]
    inputs = await container.next_inputs(max=n)
    assert len(inputs) == n
    await container.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": "success"}
                              for i in inputs])


@pytest.mark.parametrize(("each", "grows"), [(200, True), (100, False)])
async def test_a_pool_that_got_no_faster_from_a_second_container_gets_no_third(platform, each: int,
                                                                                 grows: bool) -> None:
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        await map_of(client, ids["f"], 3000)
        first = await start_after(h, worker, 0.01)
        await serve(first, 200)
        h.advance(0.1)  # 2,000 outputs/s from one container: worth a second
        second = await start_after(h, worker, 0.01)
        await worker.no_command("start_task", within=0.1)  # its effect isn't measured yet
        await serve(first, each)
        await serve(second, each)
        h.advance(0.1)  # two containers: 4,000/s (twice as fast) or 2,000/s (no faster)
        if grows:
            await worker.next("start_task")
            await worker.next("start_task")
        await worker.no_command("start_task", within=0.2)
