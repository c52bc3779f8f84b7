"""Send many small items (log lines, build output) in few messages, without adding delay.

The first item goes out at once; items that arrive while a send is in flight wait and go together
in the next one. So a quiet stream has no added latency and a busy one costs one message per
round trip, not one per line. `flush()` waits for what was added before it (a container's last
lines go out before its exit is reported), not for a busy stream to fall quiet.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("skylift.worker")


class BatchSender(Generic[T]):
    def __init__(self, send: Callable[[list[T]], Awaitable[object]], *, max_batch: int = 500,
                 max_buffer: int = 100_000, what: str = "items") -> None:
        self._send = send
        self._items: deque[T] = deque()
        self._max_batch = max_batch
        self._max_buffer = max_buffer
        self._what = what
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._added = 0  # items ever added
        self._settled = 0  # of those, sent, failed or dropped (they leave in order)
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []

    def add(self, item: T) -> None:
        self._items.append(item)
        self._added += 1
        if len(self._items) > self._max_buffer:
            # The control plane is away and output keeps coming: keep the newest.
            self._items.popleft()
            self.dropped += 1
            self._settle(1)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._items:
            batch = [self._items.popleft() for _ in range(min(self._max_batch, len(self._items)))]
            try:
                await self._send(batch)
            except Exception as exc:
                log.warning("could not send %d %s: %r", len(batch), self._what, exc)
            finally:
                self._settle(len(batch))

    def _settle(self, n: int) -> None:
        self._settled += n
        waiting = []
        for target, future in self._flushes:
            if self._settled >= target:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((target, future))
        self._flushes = waiting

    async def flush(self) -> None:
        """Wait until every item added so far has been sent (or given up on)."""
        if self._settled >= self._added:
            return
        if self._items and (self._task is None or self._task.done()):  # a drain that was cancelled
            self._task = asyncio.get_running_loop().create_task(self._drain())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flushes.append((self._added, future))
        try:
            await future
        finally:
            if not future.done():  # cancelled (a bounded wait ran out)
                self._flushes = [(t, f) for t, f in self._flushes if f is not future]
