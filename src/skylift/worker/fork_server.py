"""The worker's handle on one memory-snapshot template (`python -m skylift._runtime --template`).

    template = TemplateProcess(key, function_id, params, directory)
    await template.start(argv, env, cwd, source, on_output, owner=task_id)
    await template.wait_ready()                     # TemplateUnavailable: failed or refused
    child = await template.fork(task_id, env, cwd, stdout_w, stderr_w)
    code = await child.exit                          # reported by the template, which reaps it
    template.retire()                                # forks no more; exits after its last child

The template is the parent of every container it forks: it reaps them and reports their exit
codes over the socket pair (`_protocol/forkserver.py`). If the template itself dies, its children
die with it (`PR_SET_PDEATHSIG`) and are reported as killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgpack

from .._protocol import forkserver
from .process_runtime import pump_lines
from .runtime import OutputSink, SnapshotSource

log = logging.getLogger("skylift.worker")

# What a child's exit code is when its template died under it (it was SIGKILLed with it).
KILLED_WITH_TEMPLATE = 128 + 9


class Launched(Protocol):
    """A started template: an asyncio subprocess, or a container `Sandbox`."""

    pid: int

    @property
    def stdout(self) -> asyncio.StreamReader | None: ...

    @property
    def stderr(self) -> asyncio.StreamReader | None: ...

    async def wait(self) -> int: ...


# (argv, env, cwd, the template's socket fd, the spec file) -> the started template
Launch = Callable[[list[str], dict[str, str], Path, int, Path], Awaitable[Launched]]


class TemplateUnavailable(Exception):
    """This template can't fork containers (it failed, refused, retired or died); the reason is the message."""


class TemplateState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"  # loading failed, or it refused to be forked (see `reason`)
    RETIRED = "retired"  # superseded or idle: forks no more, exits after its children


@dataclass(eq=False)
class ForkedChild:
    task_id: str
    pid: int
    exit: asyncio.Future[int]
    fork_ms: float = 0.0


@dataclass(eq=False)
class TemplateProcess:
    key: str
    function_id: str
    params: bytes | None
    directory: Path
    state: TemplateState = TemplateState.STARTING
    reason: str = ""
    pid: int = 0
    times: dict[str, float] = field(default_factory=dict)  # import_ms, snap_hooks_ms (once, in the template)
    started_ms: float = 0.0  # process start -> ready
    children: dict[int, ForkedChild] = field(default_factory=dict)
    owner: str = ""  # the task whose log gets the template's own output
    last_used: float = field(default_factory=time.monotonic)
    process: Launched | None = None
    sandboxed: bool = False  # in a container sandbox: its children's pids are of its pid namespace
    idle_seconds: float = 600.0  # it retires after this long without a container (snapshot_runtime)
    _sock: socket.socket | None = None
    _ready: asyncio.Future[None] | None = None
    _forks: dict[str, asyncio.Future[ForkedChild]] = field(default_factory=dict)
    _spares: dict[str, asyncio.Future[tuple[int, socket.socket]]] = field(default_factory=dict)  # being forked
    _activated: dict[str, ForkedChild] = field(default_factory=dict)  # spare id -> the container it became
    _telling: set[asyncio.Task[None]] = field(default_factory=set)  # messages waiting for room on the socket
    spare_exits: dict[str, asyncio.Future[int]] = field(default_factory=dict)  # spares not activated: their end
    _background: list[asyncio.Task[Any]] = field(default_factory=list)

    async def start(self, argv: list[str], env: dict[str, str], cwd: Path, source: SnapshotSource,
                    on_output: OutputSink, *, owner: str, launch: Launch | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.owner = owner
        self._ready = loop.create_future()
        self.directory.mkdir(parents=True, exist_ok=True)
        spec_path = self.directory / "spec.msgpack"
        spec_path.write_bytes(msgpack.packb({"definition": source.definition, "params": source.params},
                                            use_bin_type=True))
        ours, theirs = forkserver.pair()
        try:
            env = {**env, forkserver.ENV_TEMPLATE_FD: str(theirs.fileno()),
                   forkserver.ENV_TEMPLATE_SPEC: str(spec_path)}
            begun = time.perf_counter()
            if launch is not None:
                self.sandboxed = True
                self.process = await launch([*argv, "--template"], env, cwd, theirs.fileno(), spec_path)
            else:
                self.process = await asyncio.create_subprocess_exec(
                    *argv, "--template", cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
                    pass_fds=(theirs.fileno(),))
        except BaseException as exc:
            ours.close()
            self.state = TemplateState.FAILED
            self.reason = f"the snapshot template could not start: {exc}"
            self._fail_waiters(self.reason)  # containers that found it starting wait on it
            raise
        finally:
            theirs.close()
        self.pid = self.process.pid
        ours.setblocking(False)
        self._sock = ours
        loop.add_reader(ours.fileno(), self._on_readable)
        assert self.process.stdout is not None and self.process.stderr is not None

        def emit(_: str, stream: str, text: str) -> None:
            on_output(self.owner, stream, text)

        self._background = [loop.create_task(pump_lines(self.process.stdout, emit, "", "stdout")),
                            loop.create_task(pump_lines(self.process.stderr, emit, "", "stderr")),
                            loop.create_task(self._watch(begun))]

    async def wait_ready(self) -> None:
        assert self._ready is not None, "start() first"
        await asyncio.shield(self._ready)

    @property
    def usable(self) -> bool:
        return self.state in (TemplateState.STARTING, TemplateState.READY)

    async def fork(self, task_id: str, env: dict[str, str], cwd: Path, stdout_fd: int, stderr_fd: int,
                   *, binds: list[tuple[str, str, bool]] | None = None, cgroup_procs: list[str] | None = None,
                   container: dict[str, Any] | None = None, extra_fds: list[int] | None = None) -> ForkedChild:
        """Fork a container; the fds are sent (the caller still closes its copies).

        `container` and `extra_fds` make it a container of its own (`_runtime/fork_container.py`).
        """
        if self.state is not TemplateState.READY or self._sock is None:
            raise TemplateUnavailable(f"the snapshot template is {self.state.value}: {self.reason or 'not ready'}")
        future: asyncio.Future[ForkedChild] = asyncio.get_running_loop().create_future()
        self._forks[task_id] = future
        message: dict[str, Any] = {"op": "fork", "task_id": task_id, "env": env, "cwd": str(cwd),
                                   "requested_at": time.time()}
        if binds:
            message["binds"] = [list(b) for b in binds]
        if cgroup_procs:
            message["cgroup_procs"] = cgroup_procs
        if container:
            message["container"] = container
        try:
            await self._send(message, [stdout_fd, stderr_fd, *(extra_fds or [])])
            child = await future
        finally:
            self._forks.pop(task_id, None)
        self.last_used = time.monotonic()
        return child

    async def spare(self, spare_id: str, container: dict[str, Any], fds: list[int]) -> tuple[int, socket.socket]:
        """Have a spare forked and set up (`container`, `fds` as for `fork`): its pid and the socket it waits on
        for `activate`. `spare_exits[spare_id]` resolves if it ends before (dropped, failed, with the template)."""
        if self.state is not TemplateState.READY or self._sock is None:
            raise TemplateUnavailable(f"the snapshot template is {self.state.value}: {self.reason or 'not ready'}")
        loop = asyncio.get_running_loop()
        forked: asyncio.Future[tuple[int, socket.socket]] = loop.create_future()
        self._spares[spare_id] = forked
        self.spare_exits[spare_id] = loop.create_future()
        try:
            await self._send({"op": "spare", "spare_id": spare_id, "container": container}, fds)
            return await forked
        except BaseException:
            # Its sandbox may go now: whatever of it is left is killed with its cgroup.
            ended = self.spare_exits.pop(spare_id, None)
            if ended is not None and not ended.done():
                ended.set_result(1)
            if forked.done() and not forked.cancelled() and forked.exception() is None:
                forked.result()[1].close()
            raise
        finally:
            self._spares.pop(spare_id, None)

    def activate(self, spare_id: str, pid: int, channel: socket.socket, task_id: str, env: dict[str, str],
                 cwd: Path, stdout_fd: int, stderr_fd: int) -> ForkedChild:
        """Make the spare `task_id`'s container: the task's part goes to the spare itself, over `channel` (closed
        here; the caller still closes its copies of the fds), and the template is told it is a container now."""
        if self.state is not TemplateState.READY or self._sock is None:
            channel.close()
            raise TemplateUnavailable(f"the snapshot template is {self.state.value}: {self.reason or 'not ready'}")
        try:
            forkserver.send(channel, {"op": "activate", "task_id": task_id, "env": env, "cwd": str(cwd),
                                      "requested_at": time.time()}, [stdout_fd, stderr_fd])
        except OSError as exc:
            raise TemplateUnavailable(f"the spare is gone: {exc}") from None
        finally:
            channel.close()
        child = ForkedChild(task_id, pid, asyncio.get_running_loop().create_future())
        self.children[pid] = child
        self._activated[spare_id] = child
        self.spare_exits.pop(spare_id, None)  # its end is the container's now (`child.exit`)
        told = {"op": "activated", "spare_id": spare_id, "task_id": task_id}
        try:
            forkserver.send(self._sock, told)
        except BlockingIOError:
            later = asyncio.get_running_loop().create_task(self._tell(told))
            self._telling.add(later)
            later.add_done_callback(self._telling.discard)
        except OSError:
            pass  # the template is gone, and the spare with it: `_watch` reports it
        self.last_used = time.monotonic()
        return child

    async def _tell(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(TemplateUnavailable):
            await self._send(message)

    def drop_spare(self, spare_id: str) -> None:
        """The spare exits without running anything (`spare_exits[spare_id]` resolves)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                forkserver.send(self._sock, {"op": "drop_spare", "spare_id": spare_id})

    def retire(self) -> None:
        """Fork no more; the template exits once its last container has."""
        if self.state in (TemplateState.STARTING, TemplateState.READY):
            self.state = TemplateState.RETIRED
            self.reason = self.reason or "retired"
        if self._sock is not None:
            with contextlib.suppress(OSError):
                forkserver.send(self._sock, {"op": "retire"})
        self._fail_waiters(f"the snapshot template was {self.state.value}")

    async def close(self) -> None:
        """Retire and let go of the template (it still outlives its children, not them it)."""
        self.retire()
        self._close_socket()

    async def closed(self, timeout: float) -> None:
        """Wait until the template has exited and its directory (and sandbox) are gone; kill it after `timeout`."""
        watch = self._background[-1] if self._background else None
        if watch is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(watch), timeout)
        except asyncio.TimeoutError:
            kill = getattr(self.process, "close", None)  # a Sandbox: kills everything in it
            if kill is not None:
                await kill()
            elif self.process is not None and self.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, 9)
            await asyncio.wait([watch], timeout=5)

    # -- the socket -----------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._sock is None:
                raise TemplateUnavailable(f"the snapshot template is gone: {self.reason or 'its socket closed'}")
            try:
                forkserver.send(self._sock, message, fds or [])
                return
            except BlockingIOError:
                writable: asyncio.Future[None] = loop.create_future()
                fd = self._sock.fileno()
                loop.add_writer(fd, _wake, writable)
                try:
                    await writable
                finally:
                    loop.remove_writer(fd)
            except OSError as exc:
                self._lost(f"its socket failed: {exc}")
                raise TemplateUnavailable(f"the snapshot template is gone: {exc}") from None

    def _on_readable(self) -> None:
        while self._sock is not None:
            try:
                message, fds = forkserver.recv(self._sock)
            except BlockingIOError:
                return
            except forkserver.ForkProtocolError as exc:
                log.warning("snapshot template %s: %s", self.key, exc)
                continue
            except OSError as exc:
                self._lost(f"its socket failed: {exc}")
                return
            if message is None:
                forkserver.close_fds(fds)
                self._lost("it closed its socket")
                return
            if message["op"] == "spared" and len(fds) == 1:  # the socket a spare waits on: ours now
                made = self._spares.get(str(message.get("spare_id")))
                channel = socket.socket(fileno=fds[0])
                if made is not None and not made.done():
                    made.set_result((int(message["pid"]), channel))
                else:
                    channel.close()
                continue
            forkserver.close_fds(fds)  # no other message brings fds
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "ready":
            self.state = TemplateState.READY
            self.times = {k: float(message.get(k) or 0.0) for k in ("import_ms", "snap_hooks_ms")}
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif op in ("failed", "refused"):
            self.state = TemplateState.FAILED
            self.reason = str(message.get("error") or message.get("reason") or op)
            if op == "refused":
                self.reason = f"the snapshot was refused: {self.reason}"
            self._fail_waiters(self.reason)
        elif op == "forked":
            child = ForkedChild(str(message.get("task_id")), int(message["pid"]),
                                asyncio.get_running_loop().create_future(), float(message.get("fork_ms") or 0))
            self.children[child.pid] = child
            waiter = self._forks.get(child.task_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(child)
        elif op == "fork_failed":
            waiter = self._forks.get(str(message.get("task_id")))
            if waiter is not None and not waiter.done():
                waiter.set_exception(TemplateUnavailable(str(message.get("error") or "the fork failed")))
        elif op in ("spare_failed", "spare_exited"):
            spare_id = str(message.get("spare_id"))
            became = self._activated.pop(spare_id, None)
            if became is not None:  # it ended before the template heard of its activation
                self.children.pop(became.pid, None)
                if not became.exit.done():
                    became.exit.set_result(int(message.get("code", 1)))
                return
            made = self._spares.get(spare_id)
            if made is not None and not made.done():
                made.set_exception(TemplateUnavailable(str(message.get("error") or "the spare exited")))
            ended = self.spare_exits.pop(spare_id, None)
            if ended is not None and not ended.done():
                ended.set_result(int(message.get("code", 1)))
        elif op == "exited":
            gone = self.children.pop(int(message["pid"]), None)
            if gone is not None and self._activated:
                self._activated = {k: c for k, c in self._activated.items() if c is not gone}
            if gone is not None and not gone.exit.done():
                gone.exit.set_result(int(message.get("code", 1)))
            self.last_used = time.monotonic()
        else:
            log.warning("snapshot template %s sent an unknown message %r", self.key, op)

    def _fail_waiters(self, reason: str) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(TemplateUnavailable(reason))
            self._ready.exception()  # retrieved: nobody may be waiting
        for waiters in (self._forks, self._spares):
            for waiter in waiters.values():
                if not waiter.done():
                    waiter.set_exception(TemplateUnavailable(reason))

    def _lost(self, why: str) -> None:
        if self.state is not TemplateState.RETIRED:
            self.state = TemplateState.FAILED
            self.reason = self.reason or f"the snapshot template stopped answering: {why}"
        self._fail_waiters(self.reason)
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def _watch(self, begun: float) -> None:
        assert self.process is not None
        ready = asyncio.ensure_future(self.wait_ready())
        exited = asyncio.ensure_future(self.process.wait())
        await asyncio.wait([ready, exited], return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not ready.exception():
            self.started_ms = (time.perf_counter() - begun) * 1000
        elif not ready.done():
            ready.cancel()
        code = await exited
        self._lost(f"it exited with code {code}")
        # Its children died with it (PR_SET_PDEATHSIG); whatever exit it could not report is a kill.
        for child in self.children.values():
            if not self.sandboxed:  # (a sandbox's pid namespace took its children with it)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, 9)
            if not child.exit.done():
                child.exit.set_result(KILLED_WITH_TEMPLATE)
        self.children.clear()
        for ended in self.spare_exits.values():  # its sandbox's pid namespace took its spare too
            if not ended.done():
                ended.set_result(KILLED_WITH_TEMPLATE)
        self.spare_exits.clear()
        await asyncio.to_thread(shutil.rmtree, self.directory, True)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
