"""A sandbox's container: run its command and the processes `exec` starts, relay their stdio.

    control plane ──sandbox.container_poll──▶ {stdin: [...], execs: [...], stop}
    pipe ──▶ sandbox.put_output {process_id, stream, offset, data, eof}   (re-sent until accepted)
    exit ──▶ sandbox.process_exit {process_id, exit_code, timed_out?}

The processes run in this container (its namespaces, cgroups, limits, network policy and
volumes, like a function's code) with its environment minus the platform's credentials. With no
command the sandbox idles until it is terminated or times out, as Modal's does.
Every call is safe to re-send: output and stdin carry offsets.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from .._protocol import api
from .._protocol.rpc import RpcError
from .connection import ReconnectingClient

CHUNK = 1024 * 1024  # one put at most; the pipe is read into a buffer this big while a put is in flight
POLL_SECONDS = 25.0
PAUSED_POLL_SECONDS = 0.1
PUT_SECONDS = 20.0
STDIN_BACKLOG = 1024 * 1024  # local bytes waiting for a process's stdin before we stop fetching more
# Never handed to the sandbox's processes: the container's credentials and the platform's own settings.
HIDDEN_ENV = (api.ENV_TASK_TOKEN, api.ENV_SERVER_URL, api.ENV_IS_REMOTE, "SKYLIFT_PRELOAD")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN_ENV}
    env.update(extra or {})
    return env


def descendants(pid: int) -> list[int]:
    """`pid`'s children, their children, ... (from /proc; the container's own pid namespace there)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """Kill a process and everything it started (an exec past its timeout: `bash -c "sleep 60"`)."""
    for target in [pid, *descendants(pid)]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Proc:
    """One running process and its relays."""

    def __init__(self, rpc: ReconnectingClient, process_id: str) -> None:
        self.rpc = rpc
        self.process_id = process_id
        # Set once it runs. The Proc exists before, so that the very next poll already asks for its stdin.
        self.proc: asyncio.subprocess.Process | None = None
        self.received = 0  # stdin bytes fetched from the control plane
        self.stdin_eof = False
        self.backlog: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.backlog_bytes = 0
        self.timed_out = False

    async def pump(self, stream: str, reader: asyncio.StreamReader | None) -> None:
        offset = 0
        while True:
            data = await reader.read(CHUNK) if reader is not None else b""
            eof = not data
            while True:
                got = await self.rpc.call("sandbox.put_output", {
                    "process_id": self.process_id, "stream": stream, "offset": offset, "data": data, "eof": eof,
                    "timeout": PUT_SECONDS})
                if got.get("accepted"):
                    break
            offset += len(data)
            if eof:
                return

    def feed(self, offset: int, data: bytes, eof: bool) -> None:
        new = data[max(0, self.received - offset):] if offset <= self.received else b""
        if offset > self.received:
            return  # a gap can't happen (the control plane sends from what we acknowledged); ignore it
        self.received += len(new)
        if new:
            self.backlog_bytes += len(new)
            self.backlog.put_nowait(new)
        if eof and not self.stdin_eof:
            self.stdin_eof = True
            self.backlog.put_nowait(None)

    async def write_stdin(self) -> None:
        pipe = self.proc.stdin if self.proc is not None else None
        if pipe is None:
            return
        try:
            while True:
                chunk = await self.backlog.get()
                if chunk is None:
                    pipe.close()
                    return
                self.backlog_bytes -= len(chunk)
                pipe.write(chunk)
                await pipe.drain()
        except (BrokenPipeError, ConnectionResetError):
            return  # the process closed its stdin or exited

    @property
    def wants_stdin(self) -> bool:
        running = self.proc is None or self.proc.returncode is None
        return not self.stdin_eof and self.backlog_bytes < STDIN_BACKLOG and running


class SandboxRunner:
    def __init__(self, rpc: ReconnectingClient, sandbox: dict[str, Any]) -> None:
        self.rpc = rpc
        self.sandbox_id = str(sandbox["sandbox_id"])
        self.cmd = [str(a) for a in sandbox.get("cmd") or []]
        self.workdir = sandbox.get("workdir") or None
        self.procs: dict[str, Proc] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.stopping = asyncio.Event()

    def _spawn_task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        main: asyncio.Task[Any] | None = None
        if self.cmd:
            self.procs[self.sandbox_id] = Proc(self.rpc, self.sandbox_id)
            main = self._spawn_task(self._run(self.sandbox_id, self.cmd, self.workdir, {}, None, "pipe", "pipe"))
        poller = self._spawn_task(self._poll())
        stop = self._spawn_task(self.stopping.wait())
        waiting = {poller, stop} | ({main} if main is not None else set())
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for proc in self.procs.values():
            if proc.proc is not None and proc.proc.returncode is None:
                proc.proc.kill()
        for task in (poller, stop):
            task.cancel()
        if main is not None and not main.done():
            main.cancel()
        return 0

    async def _poll(self) -> None:
        while not self.stopping.is_set():
            acks = {pid: p.received for pid, p in self.procs.items() if p.wants_stdin}
            # A process whose stdin backlog is full is left out until its pipe drains: poll briefly
            # meanwhile, so it is asked for again soon after (an answer is never cut short).
            paused = any(not p.wants_stdin and not p.stdin_eof and (p.proc is None or p.proc.returncode is None)
                         for p in self.procs.values())
            timeout = PAUSED_POLL_SECONDS if paused else POLL_SECONDS
            got = await self.rpc.call("sandbox.container_poll", {"acks": acks, "timeout": timeout})
            for item in got.get("stdin") or []:
                proc = self.procs.get(str(item.get("process_id")))
                if proc is not None:
                    proc.feed(int(item["offset"]), bytes(item.get("data") or b""), bool(item.get("eof")))
            for spec in got.get("execs") or []:
                self.procs[str(spec["process_id"])] = Proc(self.rpc, str(spec["process_id"]))
                self._spawn_task(self._guarded(str(spec["process_id"]), list(spec["argv"]), spec.get("workdir"),
                                           dict(spec.get("env") or {}), spec.get("timeout"),
                                           spec.get("stdout") or "pipe", spec.get("stderr") or "pipe"))
            if got.get("stop"):
                self.stopping.set()

    async def _guarded(self, *args: Any) -> None:
        try:
            await self._run(*args)
        except RpcError:
            pass  # the sandbox ended meanwhile: nobody reads this process any more

    async def _run(self, process_id: str, argv: list[str], workdir: str | None, env: dict[str, str],
                   timeout: float | None, stdout: str, stderr: str) -> None:
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=pipe, stdout=devnull if stdout == "devnull" else pipe,
                stderr=devnull if stderr == "devnull" else pipe, cwd=workdir or self.workdir, env=child_env(env),
                limit=CHUNK)
        except OSError as exc:
            self.procs.pop(process_id, None)
            message = f"{argv[0]}: {exc.strerror or exc}\n".encode()
            await self.rpc.call("sandbox.put_output", {"process_id": process_id, "stream": "stderr", "offset": 0,
                                                       "data": message, "eof": True, "timeout": PUT_SECONDS})
            await self.rpc.call("sandbox.put_output", {"process_id": process_id, "stream": "stdout", "offset": 0,
                                                       "data": b"", "eof": True, "timeout": PUT_SECONDS})
            await self.rpc.call("sandbox.process_exit", {"process_id": process_id, "exit_code": 127})
            return
        running = self.procs[process_id]
        running.proc = proc
        writer = self._spawn_task(running.write_stdin())
        pumps = [self._spawn_task(running.pump("stdout", proc.stdout)),
                 self._spawn_task(running.pump("stderr", proc.stderr))]
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            running.timed_out = True
            kill_tree(proc.pid)
            await proc.wait()
        await asyncio.gather(*pumps)
        writer.cancel()
        code = proc.returncode if proc.returncode is not None else -1
        if code < 0:
            code = 128 - code  # killed by signal N: 128+N, as a shell reports it
        if running.timed_out:
            code = -1  # Modal's ContainerProcess reports an exec past its timeout as -1
        await self.rpc.call("sandbox.process_exit", {"process_id": process_id, "exit_code": code,
                                                     "timed_out": running.timed_out})


async def serve(rpc: ReconnectingClient, definition: dict[str, Any]) -> int:
    """The life of a sandbox's container (entrypoint.py hands over after `container.init`)."""
    await rpc.call("container.ready", {})
    code = await SandboxRunner(rpc, definition["sandbox"]).run()
    if os.environ.get("SKYLIFT_VOLUMES"):
        from .._volumes import mount as _volume_mount

        await _volume_mount.commit_all_at_exit(rpc)  # as a function's container does at a normal exit
    return code
