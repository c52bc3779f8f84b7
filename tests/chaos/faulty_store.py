"""A `Store` that fails a fraction of its writes, the two ways a real database does.

Wraps any `Store` (here `SqliteStore`): each write method, with probability `rate`, either raises
before touching the database ("failed") or commits and then raises ("committed, reported failed":
a lost acknowledgement, like a connection that drops after COMMIT). Reads pass through untouched.
Every method not listed as a write is delegated as is, so new `Store` methods keep working.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

# Store methods that change state (src/skylift/server/store.py).
WRITE_PREFIXES = ("insert_", "set_", "add_", "close_", "record_", "expire_", "append_", "prune_", "delete_",
                  "put_")


class InjectedFault(sqlite3.OperationalError):
    """What the wrapper raises: a sqlite3 error, as the real store would."""


class FaultyStore:
    def __init__(self, inner: Any, rate: float, seed: int = 0) -> None:
        self.inner = inner
        self.rate = rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.writes = 0
        self.failed = 0  # raised before writing
        self.lied = 0  # wrote, then raised

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not name.startswith(WRITE_PREFIXES) or not callable(method):
            return method
        return self._faulty(name, method)

    def _faulty(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.writes += 1
                roll = self._random.random()
            if roll < self.rate / 2:
                with self._lock:
                    self.failed += 1
                raise InjectedFault(f"injected fault: {name} failed (disk I/O error)")
            result = method(*args, **kwargs)
            if roll < self.rate:
                with self._lock:
                    self.lied += 1
                raise InjectedFault(f"injected fault: {name} committed, then reported failure")
            return result

        return call

    def summary(self) -> dict[str, int]:
        return {"writes": self.writes, "failed": self.failed, "committed_then_failed": self.lied}
