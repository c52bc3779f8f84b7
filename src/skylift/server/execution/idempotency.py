"""Idempotency keys: a caller's retry after an ambiguous failure gets the first answer again.

A client names each `call.start` and `call.run` with a random key. The first request with a key
does the work; a repeat (the answer was lost, the client re-sent it) waits for that work if it is
still in flight and answers the same call id and input ids, creating nothing. Keys of sync calls
live here, in memory, for `KEY_TTL` seconds (a restarted control plane has forgotten the sync call
anyway); keys of async calls are also written to the store with their call (docs/exactly-once.md).

Keys are scoped by method and function, so a key never finds another function's call.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..._protocol import api

if TYPE_CHECKING:
    from .calls import Call

# Twice the SDK's retry window: a retry always comes back before its key is forgotten.
KEY_TTL = 2 * api.RETRY_WINDOW_SECONDS
# Beyond this the oldest keys are forgotten early (a bound on memory: a `.remote` key keeps its
# output); at more than MAX_KEYS / KEY_TTL calls a second that shortens how long a key is kept.
MAX_KEYS = 50_000
MAX_KEY_LENGTH = 128


class Remembered:
    """The first request with a key: its answer once it has one, and its call (or its output)."""

    __slots__ = ("_done", "answer", "call", "expires_at", "output", "pending")

    def __init__(self, expires_at: float) -> None:
        self.pending = True
        self._done: asyncio.Event | None = None  # made only when a repeat has to wait
        self.answer: dict[str, Any] | None = None  # None once done: the first request failed
        self.call: Call | None = None  # while it runs (a repeat waits on it)
        self.output: dict[str, Any] | None = None  # a finished `.remote`'s output, for a lost answer
        self.expires_at = expires_at

    async def wait(self) -> None:
        """Until the first request with this key has its answer (or failed)."""
        if self.pending:
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()

    def set_done(self) -> None:
        self.pending = False
        if self._done is not None:
            self._done.set()


class Keys:
    """Keys seen in the last `ttl` seconds, oldest first (so pruning stops at the first live one)."""

    def __init__(self, ttl: float = KEY_TTL, cap: int = MAX_KEYS) -> None:
        self.ttl = ttl
        self.cap = cap
        self._entries: OrderedDict[str, Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> Remembered | None:
        self._prune(now)
        return self._entries.get(key)

    def begin(self, key: str, now: float) -> Remembered:
        """Claim `key` for a request about to do the work; repeats find it with `get`."""
        self._prune(now)
        entry = Remembered(now + self.ttl)
        self._entries[key] = entry
        while len(self._entries) > self.cap:
            self._entries.popitem(last=False)
        return entry

    def finish(self, key: str, entry: Remembered, answer: dict[str, Any] | None) -> None:
        """The first request is done; with no answer (it failed) the key is free for a retry."""
        entry.answer = answer
        entry.set_done()
        if answer is None and self._entries.get(key) is entry:
            del self._entries[key]

    def _prune(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.expires_at > now or entry.pending:
                return
            del entries[key]


def scoped(method: str, function_id: str, key: str) -> str:
    return f"{method}/{function_id}/{key}"
