"""The container's side of the wire: outputs and generator items, batched without delay.

A lone output is sent the moment it is ready; outputs that finish while a send is in flight
queue up and go together in the next one, so batching only ever groups what is already waiting.
Generator items stream the same way, one in-flight `put_gen_items` per input, in order; an
input's final output is sent only after all its items are acknowledged.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from .._protocol.rpc import ConnectionLost

# One put_outputs carries at most this many outputs or (about) this many payload bytes, so a
# burst of large results never builds a frame near the framing limit. (The count matches the
# deepest prefetch: a burst of quick inputs goes back in one message.)
MAX_OUTPUTS_PER_BATCH = 1000
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

    When the connection is up, a send is written at once (`RpcClient.send`) and its answer is
    handled as soon as it is parsed: no task and no loop pass on either side of the call. A direct
    send cut by a lost connection goes again through the reconnecting client (outputs are
    idempotent), as does every send while the connection is down.
    """

    def __init__(self, rpc: Caller, poller: Poller | None = None) -> None:
        self._rpc = rpc
        self._poller = poller
        self._queue: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None  # a send going through the reconnecting client
        self._busy = False  # a send is in flight (written directly, or as `_task`)
        self._send_id = 0  # which send an answer belongs to (an abandoned send's answer is ignored)
        self._held = 0  # inside `holding()`: outputs queue up and go in one send at its end
        self._idle: asyncio.Event | None = None
        self.sent = 0
        self.polling = False  # the send in flight carries a poll

    def put(self, output: dict[str, Any]) -> None:
        self._queue.append(output)
        if not self._busy and not self._held:
            self._next()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Outputs put inside go together in one send (a burst handed over by worker threads)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held and not self._busy:
                self._next()

    def _batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        size = 0
        queue = self._queue
        while queue and len(batch) < MAX_OUTPUTS_PER_BATCH:
            item_size = _size(queue[0])
            if batch and size + item_size > MAX_BATCH_BYTES:
                break
            batch.append(queue.pop(0))
            size += item_size
        return batch

    def _next(self) -> None:
        """Send what is queued (the wire is free)."""
        if not self._queue:
            if self._idle is not None:
                self._idle.set()
            return
        batch = self._batch()
        params: dict[str, Any] = {"outputs": batch}
        poll = self._poller.next_poll() if self._poller is not None else None
        if poll is not None:
            params["next"] = poll
        self._busy = True
        self.polling = poll is not None
        self._send_id += 1
        send = _Send(self._send_id, len(batch), poll, params)
        # Only a connection that is itself a ReconnectingClient-like caller: a wrapper that
        # delegates attributes (web.OrderedCaller writes the web responses first) must see
        # every put_outputs through its `call`.
        current = getattr(type(self._rpc), "current", None)
        client = current(self._rpc) if current is not None else None
        if client is not None and not client.congested:
            try:
                client.send("container.put_outputs", params,
                            lambda result, error: self._answered(send, result, error, direct=True))
                return
            except ConnectionLost:
                pass
        self._task = asyncio.get_running_loop().create_task(self._resend(send))

    async def _resend(self, send: _Send) -> None:
        try:
            result = await self._rpc.call("container.put_outputs", send.params)
        except Exception as exc:
            self._answered(send, None, exc, direct=False)
            return
        self._answered(send, result, None, direct=False)

    def _answered(self, send: _Send, result: Any, error: BaseException | None, *, direct: bool) -> None:
        if send.send_id != self._send_id or not self._busy:
            return  # the answer to an abandoned send
        if direct and isinstance(error, ConnectionLost):
            # Cut before its answer: send it again through the reconnecting client.
            self._task = asyncio.get_running_loop().create_task(self._resend(send))
            return
        self._busy = False
        self.polling = False
        if error is None:
            self.sent += send.n
        else:  # the control plane refused them: nothing better to do than say so
            _log(f"could not deliver {send.n} output(s): {error!r}")
        if send.poll is not None and self._poller is not None:
            self._poller.polled(result if error is None else None)
        if not self._busy and not self._held:
            self._next()

    def abandon_poll(self) -> bool:
        """Stop waiting for the answer of a send that carries a long-poll (its outputs went out).

        Used when the container stops: the control plane has settled the outputs already, and
        whatever it leases on the poll comes back to the queue when this container exits.
        """
        if not (self.polling and self._busy):
            return False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._send_id += 1  # the abandoned send's answer, if it comes, is ignored
        self._busy = False
        self.polling = False
        if self._poller is not None:
            self._poller.polled(None)
        if not self._busy and not self._held:
            self._next()  # (nothing is expected: a long-poll rides only when nothing else runs)
        return True

    async def flush(self) -> None:
        """Wait until every queued output is sent and answered."""
        while self._busy or self._queue:
            if self._idle is None or self._idle.is_set():
                self._idle = asyncio.Event()
            await self._idle.wait()


@dataclass(frozen=True, slots=True)
class _Send:
    send_id: int
    n: int
    poll: dict[str, Any] | None
    params: dict[str, Any]


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
