"""Retry policies for functions (`modal.Retries`), and the delay before each retry.

`@app.function(retries=4)` retries up to 4 times, 1 s apart; `retries=Retries(...)` sets an
exponential backoff. The control plane applies the policy with `delay_for_attempt`, which reads the
wire form so it needs no SDK object.
"""

from __future__ import annotations

import math
from typing import Any

from .exception import InvalidError

MAX_RETRIES = 10
MAX_DELAY_SECONDS = 60.0


class Retries:
    """Adds a retry policy to a function.

    The delay before retry *n* (1-based) is `initial_delay * backoff_coefficient ** (n - 1)`,
    capped at `max_delay`. A backoff coefficient of 1.0 gives fixed-interval retries.

    Args:
        max_retries: How many times a failed input is retried, 0 to 10.
        backoff_coefficient: Factor the delay grows by after each retry, 1.0 to 10.0.
        initial_delay: Seconds before the first retry, 0 to 60.
        max_delay: Upper bound on any delay in seconds, 1 to 60.

    Example:
        >>> policy = Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=1.0)
        >>> [delay_for_attempt(policy._to_wire(), n) for n in (1, 2, 3)]
        [1.0, 2.0, 4.0]
    """

    def __init__(
        self,
        *,
        max_retries: int,
        backoff_coefficient: float = 2.0,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise InvalidError(f"Retries(max_retries={max_retries!r}): max_retries must be an int "
                               f"between 0 and {MAX_RETRIES}.")
        if not 0 <= max_retries <= MAX_RETRIES:
            raise InvalidError(
                f"Retries(max_retries={max_retries}): max_retries must be between 0 and {MAX_RETRIES}."
            )
        _check_number("backoff_coefficient", backoff_coefficient, 1.0, 10.0,
                      "1.0 (fixed-interval retries) and 10.0")
        _check_number("initial_delay", initial_delay, 0.0, MAX_DELAY_SECONDS, "0 and 60 seconds")
        _check_number("max_delay", max_delay, 1.0, MAX_DELAY_SECONDS, "1 and 60 seconds")
        self.max_retries = max_retries
        self.backoff_coefficient = float(backoff_coefficient)
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)

    @classmethod
    def from_int(cls, retries: int) -> Retries:
        """The policy behind `retries=N`: N retries, a fixed 1 s apart.

        Example:
            >>> Retries.from_int(2)._to_wire()["backoff_coefficient"]
            1.0
        """
        return cls(max_retries=retries, backoff_coefficient=1.0, initial_delay=1.0)

    def _to_wire(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "backoff_coefficient": self.backoff_coefficient,
            "initial_delay": self.initial_delay,
            "max_delay": self.max_delay,
        }

    def __repr__(self) -> str:
        return (f"Retries(max_retries={self.max_retries}, backoff_coefficient={self.backoff_coefficient}, "
                f"initial_delay={self.initial_delay}, max_delay={self.max_delay})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Retries) and self._to_wire() == other._to_wire()

    def __hash__(self) -> int:
        return hash(tuple(self._to_wire().items()))


def _check_number(name: str, value: object, low: float, high: float, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidError(f"Retries({name}={value!r}): {name} must be a number between {allowed}.")
    if not low <= value <= high:
        raise InvalidError(f"Retries({name}={value}): {name} must be between {allowed}.")


def parse_retries(retries: int | Retries | None) -> dict[str, Any] | None:
    """The wire form of a decorator's `retries=` argument (None, an int, or a Retries)."""
    if retries is None:
        return None
    if isinstance(retries, Retries):
        return retries._to_wire()
    if isinstance(retries, int) and not isinstance(retries, bool):
        return Retries.from_int(retries)._to_wire()
    raise InvalidError(
        f"retries={retries!r}: pass an int (retries 1 s apart) or modal.Retries(max_retries=..., ...)."
    )


def delay_for_attempt(wire: dict[str, Any], attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry) under a wire policy.

    Example:
        >>> delay_for_attempt({"max_retries": 5, "backoff_coefficient": 3.0, "initial_delay": 10.0,
        ...                    "max_delay": 60.0}, 3)
        60.0
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1 (the first retry), got {attempt}")
    initial = float(wire["initial_delay"])
    coefficient = float(wire["backoff_coefficient"])
    cap = float(wire["max_delay"])
    if initial == 0.0:
        return 0.0
    # Compare exponents, not products, so a large attempt number cannot overflow a float.
    if coefficient > 1.0 and (attempt - 1) * math.log(coefficient) > math.log(cap / initial):
        return cap
    return min(initial * coefficient ** (attempt - 1), cap)
