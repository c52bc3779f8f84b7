"""How calls travel: `.remote`, `.map`, `.spawn`, `.remote_gen` as async code on the SDK's loop.

`.remote()` is one round trip (`call.run`). `.map()` streams inputs in batches while it long-polls
outputs in batches, with at most MAX_OUTSTANDING inputs in flight (Modal keeps 1,000).

Every call and every output poll carries an idempotency key, so the client re-sends them across a
lost connection without creating a second call (docs/exactly-once.md). A restarted control plane
has forgotten sync calls (`.remote`, `.map`): they are started again with the inputs whose outputs
haven't arrived, and each output still reaches the caller once, in order.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import _context, _serialization
from ._client import Client
from ._protocol import api
from .exception import InvalidError, NotFoundError, OutputExpiredError, TimeoutError

MAP_BATCH = 1000
MAX_OUTSTANDING = 5000
MAX_REOPENS = 100  # a map whose call the control plane keeps forgetting gives up after this many


def new_key() -> str:
    """A fresh idempotency key (128 random bits)."""
    return secrets.token_hex(16)


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
    params = _run_params(target, args, kwargs)
    while True:
        params["idempotency_key"] = new_key()
        result = client.blocking_call("call.run", params)
        output = result.get("output")
        poll = {"call_id": result["call_id"], "timeout": api.MAX_POLL_SECONDS, "clear": True}
        try:
            while output is None:
                got = client.blocking_call("call.get_outputs", {**poll, "idempotency_key": new_key()})
                if got["outputs"]:
                    output = got["outputs"][0]
        except NotFoundError:
            continue  # a restarted control plane forgot this sync call: run it again
        return _serialization.raise_for_output(output, function_name=target.name)


async def remote(client: Client, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    params = _run_params(target, args, kwargs)
    while True:
        params["idempotency_key"] = new_key()
        result = await client.call("call.run", params)
        output = result.get("output")
        poll = {"call_id": result["call_id"], "timeout": api.MAX_POLL_SECONDS, "clear": True}
        try:
            while output is None:
                got = await client.call("call.get_outputs", {**poll, "idempotency_key": new_key()})
                if got["outputs"]:
                    output = got["outputs"][0]
        except NotFoundError:
            continue  # a restarted control plane forgot this sync call: run it again
        return _serialization.raise_for_output(output, function_name=target.name)


async def start(client: Client, target: Target, items: list[dict[str, Any]], *, invocation: str, kind: str,
                more_inputs: bool = False, key: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"function_id": target.function_id, "inputs": items, "invocation": invocation,
                              "kind": kind, "more_inputs": more_inputs, "idempotency_key": key or new_key(),
                              **_parent()}
    if target.params is not None:
        params["params"] = target.params
    result: dict[str, Any] = await client.call("call.start", params)
    return result


async def spawn(client: Client, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    result = await start(client, target, [target.item(args, kwargs)], invocation="async", kind="unary")
    return str(result["call_id"])


async def spawn_map(client: Client, target: Target, arg_tuples: Iterable[tuple[Any, ...]],
                    kwargs: dict[str, Any]) -> str:
    """Each batch is re-sent as it was (same call key, same start_index) until the control plane has it."""
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


class _MapFeed:
    """The inputs of one `.map()` and the sync call carrying them.

    An input stays in `outstanding` (by its original index) until its output arrives. If the
    control plane forgets the call (it restarted), `reopen` starts a new call with every
    outstanding input; `origin` maps the new call's indices back, and an output whose input is no
    longer outstanding (a late duplicate) is dropped, so each index is delivered once.
    """

    def __init__(self, client: Client, target: Target, it: Iterator[tuple[Any, ...]], kwargs: dict[str, Any]) -> None:
        self.client = client
        self.target = target
        self.it = it
        self.kwargs = kwargs
        self.outstanding: dict[int, dict[str, Any]] = {}
        self.pulled = 0
        self.exhausted = False
        self.call_id = ""
        self.origin: list[int] = []  # the current call's input index -> original index
        self.reopens = 0
        self.lock = asyncio.Lock()  # one of: a batch being sent, the call being (re)opened
        self.room = asyncio.Event()
        self.error: BaseException | None = None  # the feeder's, raised to the reader

    @property
    def finished(self) -> bool:
        return self.exhausted and not self.outstanding

    def _pull(self, n: int) -> list[int]:
        pulled = []
        for args in itertools.islice(self.it, n):
            self.outstanding[self.pulled] = self.target.item(args, self.kwargs)
            pulled.append(self.pulled)
            self.pulled += 1
        if len(pulled) < n:
            self.exhausted = True
        return pulled

    async def _send(self, indices: list[int]) -> None:
        """Add the inputs at these original indices to the current call."""
        start_index = len(self.origin)
        self.origin.extend(indices)  # before sending: their outputs may come back before the answer
        await self.client.call("call.put_inputs", {"call_id": self.call_id, "start_index": start_index,
                                                   "inputs": [self.outstanding[i] for i in indices]})

    async def _close(self) -> None:
        await self.client.call("call.close_inputs", {"call_id": self.call_id, "total": len(self.origin)})

    async def reopen(self, lost: str) -> None:
        """Start a call with every outstanding input: the first one, or after the control plane lost `lost`."""
        async with self.lock:
            while self.call_id == lost and not self.finished:
                self.reopens += 1
                if self.reopens > MAX_REOPENS:
                    raise NotFoundError(f"the control plane lost the call of {self.target.name}.map() "
                                        f"{MAX_REOPENS} times; giving up")
                indices = sorted(self.outstanding) or self._pull(MAP_BATCH)
                if not indices:
                    return
                result = await start(self.client, self.target, [self.outstanding[i] for i in indices[:MAP_BATCH]],
                                     invocation="sync", kind="map", more_inputs=True)
                self.call_id, self.origin = result["call_id"], list(indices[:MAP_BATCH])
                try:
                    for offset in range(MAP_BATCH, len(indices), MAP_BATCH):
                        await self._send(indices[offset:offset + MAP_BATCH])
                    if self.exhausted:
                        await self._close()
                except NotFoundError:
                    lost = self.call_id  # lost again while re-sending: once more

    async def feed(self) -> None:
        try:
            await self._feed()
        except Exception as exc:
            self.error = exc
            raise

    async def _feed(self) -> None:
        while not self.exhausted:
            while len(self.outstanding) >= MAX_OUTSTANDING:
                self.room.clear()
                await self.room.wait()
            async with self.lock:
                call_id = self.call_id
                try:
                    indices = self._pull(min(MAP_BATCH, MAX_OUTSTANDING))
                    if indices:
                        await self._send(indices)
                    if self.exhausted:
                        await self._close()
                    continue
                except NotFoundError:
                    pass
            await self.reopen(call_id)  # it re-sends what this batch held

    async def outputs(self) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
        """Batches of (original index, output), each index once, until every input has its output."""
        key = new_key()
        while not self.finished:
            if self.error is not None:
                raise self.error
            call_id, origin = self.call_id, self.origin
            # With nothing outstanding the poll stays short, so the end of the stream is noticed promptly.
            wait = api.MAX_POLL_SECONDS if self.outstanding else 0.05
            try:
                got = await self.client.call("call.get_outputs", {"call_id": call_id, "timeout": wait, "clear": True,
                                                                  "max": 20000, "idempotency_key": key})
            except NotFoundError:
                await self.reopen(call_id)
                continue
            key = new_key()  # acknowledges what this poll answered
            fresh = []
            for output in got["outputs"]:
                index = origin[output["index"]]
                if self.outstanding.pop(index, None) is not None:
                    fresh.append((index, output))
            if fresh:
                self.room.set()
                yield fresh
            elif got["done"] and self.outstanding and call_id == self.call_id:
                await self.reopen(call_id)  # the call is done without some of ours: send them again


async def map_outputs(client: Client, target: Target, arg_tuples: Iterable[tuple[Any, ...]],
                      kwargs: dict[str, Any], *, order_outputs: bool, return_exceptions: bool,
                      arrived: Callable[[int], None] | None = None) -> AsyncIterator[list[Any]]:
    """Yield lists of results (or exceptions, with return_exceptions) as they arrive.

    `arrived(n)` is told of each batch of outputs as it comes, before ordering holds any back (the
    progress bar counts finished inputs, not only those the caller has been given yet)."""
    feed = _MapFeed(client, target, iter(arg_tuples), kwargs)
    await feed.reopen("")
    if feed.finished:
        return
    feeder = asyncio.get_running_loop().create_task(feed.feed())
    pending: dict[int, dict[str, Any]] = {}
    next_index = 0
    try:
        async for batch in feed.outputs():
            if arrived is not None:
                arrived(len(batch))
            if order_outputs:
                pending.update(batch)
                values: list[Any] = []
                while next_index in pending:
                    values.append(_value_or_exception(pending.pop(next_index), target, return_exceptions))
                    next_index += 1
            else:
                values = [_value_or_exception(output, target, return_exceptions) for _, output in batch]
            if values:
                yield values
        await feeder
    finally:
        if not feeder.done():
            feeder.cancel()
        elif not feeder.cancelled():
            feeder.exception()  # raised above through feed.error; retrieved, so it isn't logged as lost
        if not feed.finished:
            try:
                await client.call("call.cancel", {"call_id": feed.call_id}, retry=False)
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
