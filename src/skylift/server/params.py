"""Checked access to request params: a malformed request gets `invalid` naming the method and field.

Handlers read every field through `Params`, so a wrong type never reaches the logic as a
TypeError deep inside it (which the RPC layer would report less clearly).
"""

from __future__ import annotations

from typing import Any, NoReturn

from .._protocol import api
from .._protocol.rpc import ErrorCode, RpcError

_MISSING: Any = object()


def invalid(method: str, message: str) -> RpcError:
    return RpcError(ErrorCode.INVALID, f"{method}: {message}")


def not_found(message: str) -> RpcError:
    return RpcError(ErrorCode.NOT_FOUND, message)


class Params:
    __slots__ = ("method", "raw")

    def __init__(self, method: str, raw: dict[str, Any]) -> None:
        self.method = method
        self.raw = raw

    def _fail(self, name: str, expected: str, value: Any) -> NoReturn:
        got = "nothing" if value is _MISSING else type(value).__name__
        raise invalid(self.method, f"field {name!r} must be {expected}, got {got}")

    def _get(self, name: str, default: Any) -> Any:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING or value is None:
            return default
        return value

    def text(self, name: str, default: Any = _MISSING) -> str:
        value = self._get(name, default)
        if not isinstance(value, str):
            self._fail(name, "a string", value)
        return value

    def opt_text(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is not None and not isinstance(value, str):
            self._fail(name, "a string or null", value)
        return value

    def integer(self, name: str, default: Any = _MISSING, *, minimum: int | None = None) -> int:
        value = self._get(name, default)
        if not isinstance(value, int) or isinstance(value, bool):
            self._fail(name, "an integer", value)
        if minimum is not None and value < minimum:
            raise invalid(self.method, f"field {name!r} must be at least {minimum}, got {value}")
        return value

    def opt_integer(self, name: str, *, minimum: int | None = None) -> int | None:
        if self.raw.get(name) is None:
            return None
        return self.integer(name, minimum=minimum)

    def number(self, name: str, default: Any = _MISSING) -> float:
        value = self._get(name, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self._fail(name, "a number", value)
        return float(value)

    def timeout(self, name: str = "timeout", default: float = 0.0) -> float:
        """A long-poll timeout, clamped to [0, MAX_POLL_SECONDS]."""
        return min(max(self.number(name, default), 0.0), api.MAX_POLL_SECONDS)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            self._fail(name, "a boolean", value)
        return value

    def blob(self, name: str, default: Any = _MISSING) -> bytes:
        value = self._get(name, default)
        if not isinstance(value, bytes):
            self._fail(name, "bytes", value)
        return value

    def opt_blob(self, name: str) -> bytes | None:
        value = self.raw.get(name)
        if value is not None and not isinstance(value, bytes):
            self._fail(name, "bytes or null", value)
        return value

    def items(self, name: str, default: Any = _MISSING) -> list[Any]:
        value = self._get(name, default)
        if not isinstance(value, list):
            self._fail(name, "a list", value)
        return value

    def mapping(self, name: str, default: Any = _MISSING) -> dict[str, Any]:
        value = self._get(name, default)
        if not isinstance(value, dict):
            self._fail(name, "a map", value)
        return value

    def choice(self, name: str, options: tuple[str, ...], default: Any = _MISSING) -> str:
        value = self.text(name, default)
        if value not in options:
            raise invalid(self.method, f"field {name!r} must be one of {', '.join(options)}; got {value!r}")
        return value

    def environment(self) -> str:
        return self.text("environment", api.DEFAULT_ENVIRONMENT) or api.DEFAULT_ENVIRONMENT

    def strings(self, name: str) -> list[str]:
        values = self.items(name)
        for value in values:
            if not isinstance(value, str):
                self._fail(f"{name}[]", "a string", value)
        return values
