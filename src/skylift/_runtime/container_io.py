"""The container's side of the wire: outputs and generator items, batched without delay.

A lone output is sent the moment it is ready; outputs that finish while a send is in flight
queue up and go together in the next one, so batching only ever groups what is already waiting.
Generator items stream the same way, one in-flight `put_gen_items` per input, in order; an
input's final output is sent only after all its items are acknowledged.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any, Protocol

# One put_outputs carries at most this many outputs or (about) this many payload bytes, so a
# burst of large results never builds a frame near the framing limit.
MAX_OUTPUTS_PER_BATCH = 100
MAX_BATCH_BYTES = 16 * 1024 * 1024


class Caller(Protocol):
    def call(self, method: str, params: dict[str, Any] | None = None) -> Awaitable[Any]: ...


def _log(message: str) -> None:
    print(f"skylift: {message}", file=sys.stderr, flush=True)


def _size(output: dict[str, Any]) -> int:
    data = output.get("data")
    return len(data) if isinstance(data, bytes) else 0


class Poller(Protocol):
    """The input loop, seen by the sender: a `put_outputs` may carry its next poll."""

    def next_poll(self) -> dict[str, Any] | None: ...

    def polled(self, answer: Any) -> None: ...


class OutputSender:
    """Queues outputs and sends them with `container.put_outputs` as soon as the wire is free.

    With a `poller`, each send asks it for the container's next poll to carry (`next`), and hands
    it the answer; the sender stays the only writer of outputs either way.
    """

    def __init__(self, rpc: Caller, poller: Poller | None = None) -> None:
        self._rpc = rpc
        self._poller = poller
        self._queue: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.polling = False  # the send in flight carries a poll

    def put(self, output: dict[str, Any]) -> None:
        self._queue.append(output)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            batch: list[dict[str, Any]] = []
            size = 0
            while self._queue and len(batch) < MAX_OUTPUTS_PER_BATCH:
                item_size = _size(self._queue[0])
                if batch and size + item_size > MAX_BATCH_BYTES:
                    break
                batch.append(self._queue.pop(0))
                size += item_size
            params: dict[str, Any] = {"outputs": batch}
            poll = self._poller.next_poll() if self._poller is not None else None
            if poll is not None:
                params["next"] = poll
            answer: Any = None
            try:
                self.polling = poll is not None
                answer = await self._rpc.call("container.put_outputs", params)
                self.sent += len(batch)
            except Exception as exc:  # the control plane refused them: nothing better to do than say so
                _log(f"could not deliver {len(batch)} output(s): {exc!r}")
            finally:
                self.polling = False
                if poll is not None and self._poller is not None:
                    self._poller.polled(answer)

    def abandon_poll(self) -> bool:
        """Stop waiting for the answer of a send that carries a long-poll (its outputs went out).

        Used when the container stops: the control plane has settled the outputs already, and
        whatever it leases on the poll comes back to the queue when this container exits.
        """
        if self.polling and self._task is not None and not self._task.done():
            self._task.cancel()
            if self._queue:  # (none is expected: a long-poll rides only when nothing else runs)
                self._task = asyncio.get_running_loop().create_task(self._drain())
            return True
        return False

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            task = self._task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # flush itself was cancelled, not an abandoned poll


class GenStream:
    """The items of one generator input, streamed in order with `container.put_gen_items`."""

    def __init__(self, rpc: Caller, input_id: str, attempt: int) -> None:
        self._rpc = rpc
        self.input_id = input_id
        self.attempt = attempt
        self._items: list[bytes] = []
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def count(self) -> int:
        return self._next + len(self._items)

    def add(self, item: bytes) -> None:
        self._items.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._items:
            batch: list[bytes] = []
            size = 0
            while self._items and (not batch or size + len(self._items[0]) <= MAX_BATCH_BYTES):
                size += len(self._items[0])
                batch.append(self._items.pop(0))
            params = {"input_id": self.input_id, "attempt": self.attempt, "start": self._next, "items": batch}
            self._next += len(batch)
            try:
                await self._rpc.call("container.put_gen_items", params)
            except Exception as exc:
                _log(f"could not deliver {len(batch)} generator item(s) of {self.input_id}: {exc!r}")

    async def flush(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
