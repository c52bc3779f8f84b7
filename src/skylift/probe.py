"""`modal.Probe`: a readiness check for a Sandbox (a TCP port accepting connections, or a command
exiting 0), Modal's value class. Sandbox readiness probes use it (docs/sandboxes.md)."""

from __future__ import annotations

from dataclasses import dataclass

from .exception import InvalidError


@dataclass(frozen=True)
class Probe:
    """`Probe.with_tcp(8080)` or `Probe.with_exec("sh", "-c", "test -f /tmp/ready")`."""

    tcp_port: int | None = None
    exec_argv: tuple[str, ...] | None = None
    interval_ms: int = 100

    def __post_init__(self) -> None:
        if (self.tcp_port is None) == (self.exec_argv is None):
            raise InvalidError("Probe must be created with Probe.with_tcp(...) or Probe.with_exec(...)")

    @staticmethod
    def _check_interval(what: str, interval_ms: object) -> None:
        if not isinstance(interval_ms, int) or isinstance(interval_ms, bool):
            raise InvalidError(f"Probe.{what}() expects an integer `interval_ms`")
        if interval_ms <= 0:
            raise InvalidError(f"Probe.{what}() expects `interval_ms` > 0, got {interval_ms}")

    @classmethod
    def with_tcp(cls, port: int, *, interval_ms: int = 100) -> Probe:
        if not isinstance(port, int) or isinstance(port, bool):
            raise InvalidError("Probe.with_tcp() expects an integer `port`")
        if port <= 0 or port > 65535:
            raise InvalidError(f"Probe.with_tcp() expects `port` in [1, 65535], got {port}")
        cls._check_interval("with_tcp", interval_ms)
        return cls(tcp_port=port, interval_ms=interval_ms)

    @classmethod
    def with_exec(cls, *argv: str, interval_ms: int = 100) -> Probe:
        if not argv:
            raise InvalidError("Probe.with_exec() requires at least one argument")
        if not all(isinstance(arg, str) for arg in argv):
            raise InvalidError("Probe.with_exec() expects all arguments to be strings")
        cls._check_interval("with_exec", interval_ms)
        return cls(exec_argv=tuple(argv), interval_ms=interval_ms)

    def _to_wire(self) -> dict[str, object]:
        if self.tcp_port is not None:
            return {"tcp_port": self.tcp_port, "interval_ms": self.interval_ms}
        return {"exec_argv": list(self.exec_argv or ()), "interval_ms": self.interval_ms}
