"""`Signal`: wake every long-poll waiting on something that changed.

A long-poll checks its condition, and if it isn't met waits on the signal of the thing it watches
(a call's outputs, a pool's queue, a worker's commands), then checks again. `notify` is O(waiters)
and allocation-free when nobody waits, so it can sit on the hot path.
"""

from __future__ import annotations

import asyncio


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class Signal:
    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: dict[asyncio.Future[bool], None] = {}

    def notify(self) -> None:
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, {}
        for future in waiters:
            if not future.done():
                future.set_result(True)

    async def wait(self, timeout: float) -> bool:
        """Wait until `notify` (True) or `timeout` seconds (False)."""
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiters[future] = None
        handle = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            handle.cancel()
            self._waiters.pop(future, None)


class Deadline:
    """Remaining time of a long-poll, in real (loop) time."""

    __slots__ = ("_end", "_loop")

    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._end = self._loop.time() + max(0.0, timeout)

    def remaining(self) -> float:
        return max(0.0, self._end - self._loop.time())
