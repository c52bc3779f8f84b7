"""User retry policy (Modal's `Retries`): whether a failed attempt runs again, and after how long."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 0
    backoff_coefficient: float = 2.0
    initial_delay: float = 1.0
    max_delay: float = 60.0

    @classmethod
    def from_definition(cls, retries: dict[str, Any] | None) -> RetryPolicy:
        if not retries:
            return cls()
        def number(name: str, default: float) -> float:
            value = retries.get(name) if retries else None
            return default if value is None else float(value)

        return cls(max_retries=int(number("max_retries", 0)), backoff_coefficient=number("backoff_coefficient", 2.0),
                   initial_delay=number("initial_delay", 1.0), max_delay=number("max_delay", 60.0))

    def delay_before(self, attempt: int) -> float | None:
        """Seconds to wait before running `attempt` (2 = first retry), or None if none remain."""
        retry = attempt - 1
        if retry < 1 or retry > self.max_retries:
            return None
        return float(min(self.initial_delay * self.backoff_coefficient ** (retry - 1), self.max_delay))
