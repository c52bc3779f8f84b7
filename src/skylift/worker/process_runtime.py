"""The process runtime: a container is a subprocess running in its image's venv.

No isolation beyond a process group of its own (its own session, so signals and cleanup reach
every process it starts); no root needed, so it works on laptops and in CI. Resource limits are
passed through but not enforced: that is the container runtime's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from . import process_binds
from .runtime import ContainerSpec, ContainerStats, ExecResult, OutputSink, RuntimeNotSupported

# Lines longer than this are split: one runaway line must not hold the log in memory.
MAX_LINE_BYTES = 64 * 1024


@dataclass
class _Container:
    spec: ContainerSpec
    process: asyncio.subprocess.Process
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    killer: asyncio.TimerHandle | None = None
    exit_code: int | None = None


async def pump_lines(reader: asyncio.StreamReader, emit: OutputSink, task_id: str, stream: str) -> None:
    def send(line: bytes) -> None:
        line = line.rstrip(b"\r")
        for start in range(0, max(len(line), 1), MAX_LINE_BYTES):
            emit(task_id, stream, line[start:start + MAX_LINE_BYTES].decode(errors="replace"))

    pending = b""
    while chunk := await reader.read(65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            send(line)
        if len(pending) > MAX_LINE_BYTES:
            cut = len(pending) - len(pending) % MAX_LINE_BYTES
            send(pending[:cut])
            pending = pending[cut:]
    if pending:
        send(pending)


def _kill_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class ProcessRuntime:
    name = "process"

    def __init__(self) -> None:
        self._containers: dict[str, _Container] = {}

    def _get(self, task_id: str) -> _Container:
        try:
            return self._containers[task_id]
        except KeyError:
            raise KeyError(f"no container {task_id} on this worker") from None

    async def prepare(self, spec: ContainerSpec) -> None:
        program = Path(spec.argv[0])
        if program.is_absolute() and not os.access(program, os.X_OK):
            raise FileNotFoundError(f"the image's interpreter {program} is missing or not executable")
        spec.cwd.mkdir(parents=True, exist_ok=True)

    async def start(self, spec: ContainerSpec, on_output: OutputSink) -> None:
        if spec.task_id in self._containers:
            raise RuntimeError(f"container {spec.task_id} is already running")
        argv, warnings = process_binds.wrap(spec)  # volumes shown at their paths (see process_binds)
        for warning in warnings:
            on_output(spec.task_id, "stderr", f"skylift: {warning}")
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=str(spec.cwd), env=spec.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        container = _Container(spec, process)
        assert process.stdout is not None and process.stderr is not None
        loop = asyncio.get_running_loop()
        container.pumps = [loop.create_task(pump_lines(process.stdout, on_output, spec.task_id, "stdout")),
                           loop.create_task(pump_lines(process.stderr, on_output, spec.task_id, "stderr"))]
        self._containers[spec.task_id] = container

    async def wait(self, task_id: str) -> int:
        container = self._get(task_id)
        code = await container.process.wait()
        # Whatever the container started and left behind goes with it.
        _kill_group(container.process.pid, signal.SIGKILL)
        await asyncio.gather(*container.pumps, return_exceptions=True)
        if container.killer is not None:
            container.killer.cancel()
        self._containers.pop(task_id, None)
        process_binds.release(task_id)
        return code if code >= 0 else 128 - code

    async def stop(self, task_id: str, *, kill: bool = False, grace: float = 30.0) -> None:
        container = self._containers.get(task_id)
        if container is None or container.process.returncode is not None:
            return
        pid = container.process.pid
        if kill:
            _kill_group(pid, signal.SIGKILL)
            return
        with contextlib.suppress(ProcessLookupError):
            container.process.send_signal(signal.SIGTERM)
        if container.killer is None:
            container.killer = asyncio.get_running_loop().call_later(grace, _kill_group, pid, signal.SIGKILL)

    async def exec(self, task_id: str, argv: list[str], *, timeout: float = 60.0) -> ExecResult:
        return await exec_in(self._get(task_id).spec, argv, timeout=timeout)

    async def stats(self, task_id: str) -> ContainerStats:
        return session_stats(self._get(task_id).process.pid)

    async def checkpoint(self, task_id: str, dest: Path) -> None:
        raise RuntimeNotSupported("checkpoint is not supported by the process runtime; memory snapshots need "
                                  "the container runtime (CRIU) or a fork server")

    async def restore(self, spec: ContainerSpec, source: Path, on_output: OutputSink) -> None:
        raise RuntimeNotSupported("restore is not supported by the process runtime; memory snapshots need "
                                  "the container runtime (CRIU) or a fork server")

    def running(self) -> list[str]:
        return [tid for tid, c in self._containers.items() if c.process.returncode is None]


async def exec_in(spec: ContainerSpec, argv: list[str], *, timeout: float = 60.0) -> ExecResult:
    """Run a command with a process-runtime container's environment and working directory."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=str(spec.cwd), env=spec.env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        _kill_group(process.pid, signal.SIGKILL)
        out, _ = await process.communicate()
    code = process.returncode if process.returncode is not None else -1
    return ExecResult(code if code >= 0 else 128 - code, out.decode(errors="replace"))


def session_stats(session: int) -> ContainerStats:
    """Processes, CPU time and memory of everything in one session (a process-runtime container)."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    pids, cpu, rss = 0, 0.0, 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields after the command name: state ppid pgrp session ... utime(12) stime(13) ... rss(22)
        if int(fields[3]) != session:
            continue
        pids += 1
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        rss += int(fields[21]) * page
    return ContainerStats(pids, cpu, rss)


# The container runtime imports it under its first name.
_pump = pump_lines
