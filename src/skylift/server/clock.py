"""Time as the control plane's decisions see it, injected so tests can move it by hand.

Decisions (lease expiry, timeouts, scale-down, app heartbeats) read `Clock.now()`, a monotonic
number of seconds. Long-polls and loop periods wait in real time; a `FakeClock` only changes what
the next decision sees, which is what makes those decisions testable without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds; only differences are meaningful."""
        ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to (`advance`)."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock can't go backwards")
        self._now += seconds
