"""How calls travel: `.remote`, `.map`, `.spawn`, `.remote_gen` as async code on the SDK's loop.

`.remote()` is one round trip (`call.run`). `.map()` streams inputs in batches while it long-polls
outputs in batches, with at most MAX_OUTSTANDING inputs in flight (Modal keeps 1,000).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from . import _context, _serialization
from ._client import Client
from ._protocol import api
from .exception import InvalidError, OutputExpiredError, TimeoutError

MAP_BATCH = 1000
MAX_OUTSTANDING = 5000


@dataclass(frozen=True)
class Target:
    """What a call goes to: a function (pool) id, Cls parameters and a method name."""

    function_id: str
    name: str
    params: bytes | None = None
    method: str | None = None

    def item(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        data = _serialization.serialize_args(args, kwargs, function_name=self.name)
        if self.method is None:
            return {"args": data}
        return {"args": data, "method": self.method}


def _parent() -> dict[str, Any]:
    parent = _context.current_input_id()
    return {"parent_input_id": parent} if parent else {}


def _run_params(target: Target, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"function_id": target.function_id, "input": target.item(args, kwargs),
                              "timeout": api.MAX_POLL_SECONDS, **_parent()}
    if target.params is not None:
        params["params"] = target.params
    return params


def remote_blocking(client: Client, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """`.remote()` from a plain thread: one blocking round trip, no event loop involved."""
    result = client.blocking_call("call.run", _run_params(target, args, kwargs))
    output = result.get("output")
    while output is None:
        got = client.blocking_call("call.get_outputs", {"call_id": result["call_id"],
                                                        "timeout": api.MAX_POLL_SECONDS, "clear": True})
        if got["outputs"]:
            output = got["outputs"][0]
    return _serialization.raise_for_output(output, function_name=target.name)


async def remote(client: Client, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    params = _run_params(target, args, kwargs)
    result = await client.call("call.run", params, retry=False)
    output = result.get("output")
    call_id = result["call_id"]
    while output is None:
        got = await client.call("call.get_outputs", {"call_id": call_id, "timeout": api.MAX_POLL_SECONDS,
                                                      "clear": True})
        if got["outputs"]:
            output = got["outputs"][0]
    return _serialization.raise_for_output(output, function_name=target.name)


async def start(client: Client, target: Target, items: list[dict[str, Any]], *, invocation: str, kind: str,
                more_inputs: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"function_id": target.function_id, "inputs": items, "invocation": invocation,
                              "kind": kind, "more_inputs": more_inputs, **_parent()}
    if target.params is not None:
        params["params"] = target.params
    result: dict[str, Any] = await client.call("call.start", params, retry=False)
    return result


async def spawn(client: Client, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    result = await start(client, target, [target.item(args, kwargs)], invocation="async", kind="unary")
    return str(result["call_id"])


async def spawn_map(client: Client, target: Target, arg_tuples: Iterable[tuple[Any, ...]],
                    kwargs: dict[str, Any]) -> str:
    it = iter(arg_tuples)
    first = [target.item(a, kwargs) for a in itertools.islice(it, MAP_BATCH)]
    result = await start(client, target, first, invocation="async", kind="map", more_inputs=True)
    call_id = result["call_id"]
    total = len(first)
    while True:
        batch = [target.item(a, kwargs) for a in itertools.islice(it, MAP_BATCH)]
        if not batch:
            break
        await client.call("call.put_inputs", {"call_id": call_id, "inputs": batch, "start_index": total})
        total += len(batch)
    await client.call("call.close_inputs", {"call_id": call_id, "total": total})
    return str(call_id)


async def map_outputs(client: Client, target: Target, arg_tuples: Iterable[tuple[Any, ...]],
                      kwargs: dict[str, Any], *, order_outputs: bool, return_exceptions: bool
                      ) -> AsyncIterator[list[Any]]:
    """Yield lists of results (or exceptions, with return_exceptions) as they arrive."""
    it = iter(arg_tuples)
    first = [target.item(a, kwargs) for a in itertools.islice(it, MAP_BATCH)]
    if not first:
        return
    result = await start(client, target, first, invocation="sync", kind="map", more_inputs=True)
    call_id = result["call_id"]
    sent = len(first)
    received = 0
    total: int | None = None
    room = asyncio.Event()

    async def feed() -> None:
        nonlocal sent, total
        while True:
            while sent - received >= MAX_OUTSTANDING:
                room.clear()
                await room.wait()
            batch = [target.item(a, kwargs) for a in itertools.islice(it, min(MAP_BATCH, MAX_OUTSTANDING))]
            if not batch:
                break
            await client.call("call.put_inputs", {"call_id": call_id, "inputs": batch, "start_index": sent},
                              retry=False)
            sent += len(batch)
        await client.call("call.close_inputs", {"call_id": call_id, "total": sent}, retry=False)
        total = sent

    feeder = asyncio.get_running_loop().create_task(feed())
    pending: dict[int, dict[str, Any]] = {}
    next_index = 0
    try:
        while total is None or received < total:
            if feeder.done() and feeder.exception() is not None:
                raise feeder.exception()  # type: ignore[misc]
            # While inputs are still being sent the poll stays short, so the end of the stream is
            # noticed promptly even when the last outputs arrived before the count was known.
            wait = 0.05 if total is None and feeder.done() else 0.5 if total is None else api.MAX_POLL_SECONDS
            got = await client.call("call.get_outputs", {"call_id": call_id, "timeout": wait, "clear": True,
                                                          "max": 20000}, retry=False)
            outputs = got["outputs"]
            received += len(outputs)
            room.set()
            values: list[Any] = []
            if order_outputs:
                for output in outputs:
                    pending[output["index"]] = output
                while next_index in pending:
                    values.append(_value_or_exception(pending.pop(next_index), target, return_exceptions))
                    next_index += 1
            else:
                values = [_value_or_exception(output, target, return_exceptions) for output in outputs]
            if values:
                yield values
        await feeder
    finally:
        if not feeder.done():
            feeder.cancel()
        if total is None or received < total:
            try:
                await client.call("call.cancel", {"call_id": call_id}, retry=False)
            except Exception:
                pass


def _value_or_exception(output: dict[str, Any], target: Target, return_exceptions: bool) -> Any:
    if return_exceptions and output.get("status") != api.STATUS_SUCCESS:
        return _serialization.exception_from_output(output, function_name=target.name)
    return _serialization.raise_for_output(output, function_name=target.name)


async def remote_gen(client: Client, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> AsyncIterator[Any]:
    result = await start(client, target, [target.item(args, kwargs)], invocation="sync", kind="generator")
    call_id = result["call_id"]
    position = 0
    finished = False
    try:
        while True:
            got = await client.call("call.get_gen_items", {"call_id": call_id, "start": position,
                                                            "timeout": api.MAX_POLL_SECONDS}, retry=False)
            for item in got["items"]:
                yield _serialization.deserialize(item, what=f"item yielded by {target.name}")
            position = got["next"]
            if got["done"]:
                finished = True
                output = got.get("output")
                if output is not None and output.get("status") != api.STATUS_SUCCESS:
                    raise _serialization.exception_from_output(output, function_name=target.name)
                return
    finally:
        if not finished:
            try:
                await client.call("call.cancel", {"call_id": call_id}, retry=False)
            except Exception:
                pass


async def get_output(client: Client, call_id: str, timeout: float | None, name: str) -> Any:
    """FunctionCall.get: wait up to `timeout` (None = forever, 0 = poll) for a spawned call."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        wait = api.MAX_POLL_SECONDS if deadline is None else max(0.0, min(api.MAX_POLL_SECONDS, deadline - loop.time()))
        got = await client.call("call.get_outputs", {"call_id": call_id, "timeout": wait, "clear": False})
        if got["outputs"]:
            output = got["outputs"][0]
            if output.get("status") == "expired":
                raise OutputExpiredError(f"the result of call {call_id} has expired (results are kept 7 days)")
            return _serialization.raise_for_output(output, function_name=name)
        if deadline is not None and loop.time() >= deadline:
            raise TimeoutError(f"call {call_id} has not finished yet (waited {timeout} s)")


def check_not_generator(is_generator: bool, name: str, what: str) -> None:
    if is_generator:
        raise InvalidError(f"{name} is a generator function; use {name}.remote_gen() instead of .{what}()")


def check_generator(is_generator: bool, name: str) -> None:
    if not is_generator:
        raise InvalidError(f"{name} is not a generator function; use {name}.remote() instead of .remote_gen()")
