"""Function calls in memory: their inputs, their outputs as they arrive, and who waits on them.

A call is one `.remote()`, `.map()`, `.spawn()`, `.spawn_map()` or `.remote_gen()`. Its outputs
are appended to `ready` in completion order (the SDK re-orders a map by index); `clear=True`
readers pop them. Durable (async) calls also keep every output by index (`kept`) for
`FunctionCall.get` and have them in the store, so they can be dropped from memory once finished.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from ..._protocol import api
from ..longpoll import Signal
from ..store import CallRecord

if TYPE_CHECKING:
    from .catalog import FunctionEntry
    from .queues import Input, Pool

KINDS = ("unary", "map", "generator")
INVOCATIONS = ("sync", "async")


class Call:
    __slots__ = (
        "call_id",
        "cancelled",
        "closed",
        "created_at",
        "feed_lock",
        "final_output",
        "finished_at",
        "function",
        "gen_items",
        "input_ids",
        "invocation",
        "kept",
        "kind",
        "last_input_at",
        "last_take",
        "live",
        "n_delivered",
        "n_done",
        "n_failed",
        "orphaned_since",
        "owner",
        "parent_input_id",
        "pool",
        "ready",
        "signal",
        "started",
    )

    def __init__(self, call_id: str, function: FunctionEntry, pool: Pool, *, kind: str, invocation: str,
                 created_at: float, parent_input_id: str | None = None, closed: bool = True) -> None:
        self.call_id = call_id
        self.function = function
        self.pool = pool
        self.kind = kind
        self.invocation = invocation
        self.created_at = created_at  # wall time, as shown to users
        self.parent_input_id = parent_input_id
        self.input_ids: list[str] = []
        self.live: dict[str, Input] = {}  # inputs without their final output yet
        self.closed = closed
        self.n_done = 0  # inputs whose final output is decided (maybe not yet delivered)
        self.n_delivered = 0
        self.n_failed = 0  # inputs whose final output is not a success (counted when decided)
        self.ready: deque[dict[str, Any]] = deque()
        self.kept: dict[int, dict[str, Any]] | None = {} if invocation == "async" else None
        self.signal = Signal()
        self.gen_items: list[bytes] = []
        self.final_output: dict[str, Any] | None = None
        self.cancelled = False
        self.started = False
        self.finished_at: float | None = None  # clock time
        self.orphaned_since: float | None = None  # clock time its caller went away
        self.owner: object | None = None  # the session of a sync caller
        self.last_input_at = 0.0  # clock time inputs last arrived (an open map left behind is closed)
        # The last keyed clear=True poll: (its key, its outputs), answered again if re-sent.
        self.last_take: tuple[str, list[dict[str, Any]]] | None = None
        self.feed_lock: asyncio.Lock | None = None  # one put_inputs batch at a time (durable calls)

    def __repr__(self) -> str:
        return f"Call({self.call_id}, {self.kind}, {self.n_delivered}/{len(self.input_ids)})"

    @property
    def durable(self) -> bool:
        return self.invocation == "async"

    @property
    def n_inputs(self) -> int:
        return len(self.input_ids)

    @property
    def all_decided(self) -> bool:
        return self.closed and self.n_done == len(self.input_ids)

    @property
    def finished(self) -> bool:
        return self.closed and self.n_delivered == len(self.input_ids)

    def deliver(self, output: dict[str, Any], now: float) -> None:
        self.n_delivered += 1
        self.ready.append(output)
        if self.kept is not None:
            self.kept[output["index"]] = output
        self.final_output = output
        if self.finished:
            self.finished_at = now
        self.signal.notify()

    def state(self) -> str:
        if self.cancelled:
            return api.STATUS_TERMINATED
        if self.finished:
            if self.kind != "map" and self.final_output is not None:
                return str(self.final_output["status"])
            return api.STATUS_FAILURE if self.n_failed else api.STATUS_SUCCESS
        return "running" if self.started else "pending"

    def record(self) -> CallRecord:
        return CallRecord(self.call_id, self.function.function_id, self.pool.params, self.kind, self.state(),
                          len(self.input_ids), self.closed, self.created_at, None, self.parent_input_id)


class Calls:
    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self.inputs: dict[str, Input] = {}

    def get(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    def add(self, call: Call) -> None:
        self.calls[call.call_id] = call
        call.pool.n_calls += 1

    def forget(self, call: Call) -> None:
        if self.calls.get(call.call_id) is call:
            del self.calls[call.call_id]
            call.pool.n_calls -= 1
        for input_id in call.live:
            self.inputs.pop(input_id, None)
