"""The seam between the worker agent and whatever isolates a container.

`ContainerRuntime` is what the agent asks of an isolation technology: prepare, start, exec, stop,
stats (and checkpoint/restore, where the technology can). `process_runtime.ProcessRuntime` is the
simple one (a subprocess in the image's venv); a namespaced runtime (overlayfs + an OCI runtime or
bubblewrap) implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# (task_id, stream, text): stream is "stdout" or "stderr"; one call per line.
OutputSink = Callable[[str, str, str], None]


class RuntimeNotSupported(Exception):
    """The runtime can't do this (e.g. checkpoint with the process runtime)."""


@dataclass
class SnapshotSource:
    """What a memory-snapshot template needs: set when the function has `enable_memory_snapshot`."""

    function_id: str
    image_id: str
    definition: dict[str, Any] | None  # None: a preloaded interpreter (the runtime and SDK, no user code)
    params: bytes | None = None


@dataclass
class ContainerSpec:
    """Everything needed to start one container, already resolved to host paths."""

    task_id: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    image_root: Path
    resources: dict[str, Any] = field(default_factory=dict)
    mount_root: Path | None = None
    scratch: Path | None = None
    snapshot: SnapshotSource | None = None
    # The container runtime's view (the process runtime has no root filesystem of its own):
    # image directories to stack, lowest first, and host paths shown at container paths. Volumes
    # are binds: `binds.append((host_dir, "/data", False))` makes host_dir appear at /data.
    layers: list[Path] = field(default_factory=list)
    binds: list[tuple[Path, str, bool]] = field(default_factory=list)  # (host path, container path, read_only)
    block_network: bool = False


@dataclass
class ExecResult:
    exit_code: int
    output: str


@dataclass
class ContainerStats:
    pids: int
    cpu_seconds: float
    rss_bytes: int


@runtime_checkable
class ExplainsExits(Protocol):
    """A runtime that can say why a container ended (e.g. killed for exceeding its memory limit)."""

    def exit_reason(self, task_id: str) -> tuple[str, str] | None:
        """(cause, message) for a container `wait` has returned for, or None when nothing is known.

        cause "oom": the container exceeded its memory limit; its inputs fail rather than re-run.
        """


class ContainerRuntime(Protocol):
    name: str

    async def prepare(self, spec: ContainerSpec) -> None:
        """Check (and set up) what `start` needs; raises with a clear message when it can't."""

    async def start(self, spec: ContainerSpec, on_output: OutputSink) -> None:
        """Start the container; its output lines go to `on_output` until it exits."""

    async def wait(self, task_id: str) -> int:
        """Wait for the container to exit; its exit code (128 + N when killed by signal N)."""

    async def exec(self, task_id: str, argv: list[str], *, timeout: float = 60.0) -> ExecResult:
        """Run a command inside a running container's environment."""

    async def stop(self, task_id: str, *, kill: bool = False, grace: float = 30.0) -> None:
        """Ask the container to stop (SIGTERM), killing it after `grace` seconds or at once."""

    async def stats(self, task_id: str) -> ContainerStats: ...

    async def checkpoint(self, task_id: str, dest: Path) -> None: ...

    async def restore(self, spec: ContainerSpec, source: Path, on_output: OutputSink) -> None: ...

    def running(self) -> list[str]:
        """Ids of the containers this runtime has started and not yet seen exit."""
