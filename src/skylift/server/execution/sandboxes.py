"""Sandboxes as the control plane holds them: each one's processes, their output and stdin buffers.

A sandbox is one container (a `Task` of a pool of its own that the scaler never sees) whose
runtime runs the sandbox's command and the processes `exec` starts in it, and relays their
stdio through the control plane:

    SDK ──sandbox.write_stdin(offset)──▶ Stdin ──sandbox.container_poll──▶ container ──▶ pipe
    SDK ◀──sandbox.read(offset)──────── Output ◀──sandbox.put_output(offset)── container ◀── pipe

Invariants:
* Every byte has an offset. A write or a put at an offset already held is a re-send (after a
  reconnect) and changes nothing; a gap is refused. So both directions are idempotent.
* Output is kept until a reader asks for a later offset (reading at X frees what is before X).
  At most `MAX_UNREAD` bytes wait per stream: past that `put_output` is refused for now and the
  container stops reading the pipe, so the process blocks on write as with a full pipe. Nothing
  is dropped.
* Stdin is kept until the container acknowledges it (its next poll names the offset it has),
  at most `MAX_UNREAD` bytes: a writer waits for room.
* A sandbox's result is set once: the main process's exit code, or "timeout"/"terminated"; the
  record stays (for `from_id`, `wait`, the rest of its output) until `KEEP_EXITED` newer sandboxes
  have ended, `KEEP_EXITED_SECONDS` passed, or the unread output of ended sandboxes passes
  `KEEP_EXITED_BYTES` (the oldest go first).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..longpoll import Signal

if TYPE_CHECKING:
    from .tasks import Task

MAX_UNREAD = 16 * 1024 * 1024
MAX_READ = 4 * 1024 * 1024  # one `sandbox.read` answer
KEEP_EXITED = 1000
KEEP_EXITED_SECONDS = 3600.0
KEEP_EXITED_BYTES = 256 * 1024 * 1024  # unread output of ended sandboxes, all together

RUNNING = "running"
EXITED = "exited"  # the process ended by itself: returncode is its exit code
TIMEOUT = "timeout"  # Modal's returncode 124
TERMINATED = "terminated"  # terminate(), killed, lost: Modal's returncode 137
RETURNCODES = {TIMEOUT: 124, TERMINATED: 137}


class OffsetError(Exception):
    """A write that would leave a gap (the client's offset is past what the server holds)."""


class Output:
    """One output stream: bytes from `base`, read by offset."""

    def __init__(self) -> None:
        self.base = 0
        self.data = bytearray()
        self.eof = False
        self.signal = Signal()  # new data, EOF, or room

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def room(self) -> bool:
        return len(self.data) < MAX_UNREAD

    def put(self, offset: int, chunk: bytes, eof: bool) -> bool:
        """Append `chunk` written at `offset`; False if there is no room yet (send it again)."""
        if offset > self.end:
            raise OffsetError(f"output at offset {offset} but only {self.end} bytes were received")
        new = chunk[self.end - offset:] if offset < self.end else chunk
        if new and not self.room():
            return False
        self.data += new
        if eof and offset + len(chunk) <= self.end:
            self.eof = True
        self.signal.notify()
        return True

    def read(self, offset: int) -> tuple[int, bytes]:
        """What there is from `offset` on (or from the oldest byte kept); frees what is before it."""
        if offset > self.base:
            drop = min(offset, self.end) - self.base
            del self.data[:drop]
            self.base += drop
            self.signal.notify()  # room for the writer
        start = max(offset, self.base)
        chunk = bytes(self.data[start - self.base:start - self.base + MAX_READ])
        return start, chunk

    def close(self) -> None:
        self.eof = True
        self.signal.notify()


class Stdin:
    """One process's stdin: bytes from `base` that the container has not acknowledged yet."""

    def __init__(self) -> None:
        self.base = 0
        self.data = bytearray()
        self.eof = False
        self.signal = Signal()  # room for a writer

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def write(self, offset: int, chunk: bytes, eof: bool) -> bool:
        """Append what is new in `chunk` (a re-send adds nothing); False when full (try again)."""
        if offset > self.end:
            raise OffsetError(f"stdin written at offset {offset} but only {self.end} bytes were received; "
                              "write from the offset the last answer gave")
        new = chunk[self.end - offset:] if offset < self.end else chunk
        if new and len(self.data) >= MAX_UNREAD:
            return False
        self.data += new
        self.eof = self.eof or eof
        return True

    def ack(self, offset: int) -> None:
        drop = min(max(offset, self.base), self.end) - self.base
        if drop:
            del self.data[:drop]
            self.base += drop
            self.signal.notify()

    def pending(self, offset: int) -> tuple[int, bytes, bool] | None:
        """What the container has not received beyond `offset` (None: nothing new)."""
        start = max(offset, self.base)
        chunk = bytes(self.data[start - self.base:start - self.base + MAX_READ])
        eof = self.eof and start + len(chunk) == self.end
        if not chunk and not (self.eof and offset <= self.end):
            return None
        return start, chunk, eof


@dataclass(eq=False)
class Process:
    """The sandbox's command (`process_id` == the sandbox id) or one `exec`."""

    process_id: str
    spec: dict[str, Any]  # what the container runs: argv, workdir, env, timeout, stdout, stderr
    stdout: Output = field(default_factory=Output)
    stderr: Output = field(default_factory=Output)
    stdin: Stdin = field(default_factory=Stdin)
    status: str = RUNNING
    returncode: int | None = None
    done: Signal = field(default_factory=Signal)
    delivered: int = 0  # stdin bytes the container said it has
    sent: bool = False  # an exec: handed to the container

    def finish(self, status: str, returncode: int | None) -> bool:
        if self.status != RUNNING:
            return False
        self.status = status
        self.returncode = returncode if returncode is not None else RETURNCODES.get(status)
        self.stdout.close()
        self.stderr.close()
        self.done.notify()
        return True

    def output(self, stream: str) -> Output:
        return self.stderr if stream == "stderr" else self.stdout


@dataclass(eq=False)
class Sandbox:
    sandbox_id: str
    app_id: str
    environment: str
    name: str | None
    tags: dict[str, str]
    created_at: float  # control-plane clock
    created_wall: float
    timeout: float
    idle_timeout: float | None
    main: Process
    task: Task | None = None
    execs: dict[str, Process] = field(default_factory=dict)
    last_active: float = 0.0
    ended_at: float | None = None
    wake: Signal = field(default_factory=Signal)  # the container's poll: new stdin, execs, stop
    stop: bool = False

    @property
    def alive(self) -> bool:
        return self.main.status == RUNNING

    def process(self, process_id: str | None) -> Process | None:
        if not process_id or process_id == self.sandbox_id:
            return self.main
        return self.execs.get(process_id)

    def processes(self) -> list[Process]:
        return [self.main, *self.execs.values()]

    def unread(self) -> int:
        return sum(len(p.stdout.data) + len(p.stderr.data) for p in self.processes())

    def end(self, status: str, returncode: int | None, now: float) -> None:
        """The sandbox is over: its result is set once; every exec ends with it."""
        if self.main.finish(status, returncode):
            self.ended_at = now
        for proc in self.execs.values():
            proc.finish(TERMINATED, None)
        self.stop = True
        self.wake.notify()

    def info(self) -> dict[str, Any]:
        return {"sandbox_id": self.sandbox_id, "app_id": self.app_id, "name": self.name, "tags": dict(self.tags),
                "status": self.main.status, "returncode": self.main.returncode, "created_at": self.created_wall,
                "task_id": self.task.task_id if self.task is not None else None}


class Sandboxes:
    """Every sandbox this control plane started, live ones and recently ended ones."""

    def __init__(self) -> None:
        self._all: dict[str, Sandbox] = {}
        self._by_task: dict[str, Sandbox] = {}
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, sandbox: Sandbox) -> None:
        self._all[sandbox.sandbox_id] = sandbox

    def bind(self, sandbox: Sandbox, task: Task) -> None:
        sandbox.task = task
        self._by_task[task.task_id] = sandbox

    def get(self, sandbox_id: str) -> Sandbox | None:
        return self._all.get(sandbox_id)

    def of_task(self, task_id: str) -> Sandbox | None:
        return self._by_task.get(task_id)

    def live(self) -> list[Sandbox]:
        return [s for s in self._all.values() if s.alive]

    def all(self) -> list[Sandbox]:
        return list(self._all.values())

    def named(self, app_id: str, name: str) -> Sandbox | None:
        for sandbox in self._all.values():
            if sandbox.alive and sandbox.app_id == app_id and sandbox.name == name:
                return sandbox
        return None

    def ended(self, sandbox: Sandbox, now: float) -> None:
        """Remember an ended sandbox for a while; forget the oldest beyond the bounds."""
        if sandbox.task is not None:
            self._by_task.pop(sandbox.task.task_id, None)
        self._ended[sandbox.sandbox_id] = None
        kept = sum(s.unread() for s in (self._all.get(i) for i in self._ended) if s is not None)
        while self._ended:
            oldest_id = next(iter(self._ended))
            oldest = self._all.get(oldest_id)
            too_many = len(self._ended) > KEEP_EXITED
            too_old = oldest is None or (oldest.ended_at is not None and now - oldest.ended_at > KEEP_EXITED_SECONDS)
            if not (too_many or too_old or kept > KEEP_EXITED_BYTES):
                break
            kept -= oldest.unread() if oldest is not None else 0
            del self._ended[oldest_id]
            self._all.pop(oldest_id, None)
