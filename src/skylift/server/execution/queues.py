"""Input queues and leases: one FIFO of pending inputs per container pool.

A pool is a function id plus the encoded Cls parameters (each distinct parameter set runs in
its own containers, Modal §3.5). Containers pull: `container.get_inputs` takes up to `max`
pending inputs, or parks a `Waiter` that the next `enqueue` serves directly, so a warm
container wakes within one loop iteration of a `.remote()` arriving.

Each handed-out input is *leased* to its task. A lease ends with an output, a requeue (the task
died, or sent nothing for `lease_seconds`), or a cancellation; the bookkeeping for those lives in
`dispatch.py`. Removing an input from the middle of the FIFO (cancellation) is lazy: it is
marked done and skipped when reached, so cancelling never scans the queue.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..policy.faults import CrashState

if TYPE_CHECKING:
    from .calls import Call
    from .catalog import FunctionEntry
    from .tasks import Task


class InputState(enum.Enum):
    PENDING = "pending"  # in its pool's FIFO
    LEASED = "leased"  # handed to a task
    RETRY_WAIT = "retry_wait"  # a failed attempt waits out its backoff
    DONE = "done"  # has its final output


@dataclass(slots=True, eq=False)
class Input:
    input_id: str
    call: Call
    index: int
    args: bytes
    method: str | None = None
    attempt: int = 1
    internal_failures: int = 0
    state: InputState = InputState.PENDING
    task: Task | None = None
    started_at: float = 0.0  # clock time its current attempt started (or was leased)
    ticket: int = 0  # bumped at every enqueue; a FIFO entry with an older ticket is stale
    seen_at: float = 0.0  # last time its container said it holds it (lease renewal)
    # Task ids it was leased to: their outputs for it are accepted (server/access.py), nobody else's.
    held_by: list[str] = field(default_factory=list)

    def leased_view(self) -> dict[str, Any]:
        view = {"input_id": self.input_id, "call_id": self.call.call_id, "index": self.index,
                "attempt": self.attempt, "args": self.args, "kind": self.call.kind}
        if self.method is not None:
            view["method"] = self.method
        return view


@dataclass(slots=True, eq=False)
class Waiter:
    task: Task
    max: int
    future: asyncio.Future[list[Input]]


PoolKey = tuple[str, bytes]


class Pool:
    """Pending inputs, parked container waiters and the tasks of one container pool."""

    def __init__(self, function: FunctionEntry, params: bytes | None, on_backlog: Callable[[], None]) -> None:
        self.function = function
        self.params = params
        self.key: PoolKey = (function.function_id, params or b"")
        self.pending: deque[tuple[int, Input]] = deque()
        self.n_pending = 0
        self.waiters: deque[Waiter] = deque()
        self.tasks: dict[str, Task] = {}
        self.last_active: float | None = None
        self.crash = CrashState()  # crash-loop bookkeeping (faults.py)
        self.crash_definition: dict[str, Any] | None = None  # the definition whose containers crashed
        self.crash_message = ""  # why the pool gave up, for sync inputs that arrive meanwhile
        self.backoff_until = 0.0
        self.n_calls = 0  # calls in memory that feed this pool
        self.n_completed = 0  # outputs its containers returned: the scaler's drain rate counts them
        self._on_backlog = on_backlog

    def __repr__(self) -> str:
        return f"Pool({self.function.tag!r}, pending={self.n_pending}, tasks={len(self.tasks)})"

    @property
    def n_running(self) -> int:
        return sum(len(t.leased) for t in self.tasks.values())

    def enqueue(self, inputs: Iterable[Input], now: float, *, front: bool = False) -> None:
        batch = list(inputs)
        if not batch:
            return
        entries = []
        for inp in batch:
            inp.state = InputState.PENDING
            inp.task = None
            inp.ticket += 1
            entries.append((inp.ticket, inp))
        if front:  # redeliveries go first: they have waited longest
            self.pending.extendleft(reversed(entries))
        else:
            self.pending.extend(entries)
        self.n_pending += len(batch)
        self.last_active = now
        self._serve_waiters(now)
        if self.n_pending:
            self._on_backlog()

    def discard(self, inp: Input) -> None:
        """Take a pending input out of the FIFO (its entry goes stale and is skipped when reached)."""
        if inp.state is InputState.PENDING:
            self.n_pending -= 1
            inp.ticket += 1
            inp.state = InputState.DONE

    def drain(self) -> list[Input]:
        """Remove and return every pending input."""
        drained = [inp for ticket, inp in self.pending if inp.state is InputState.PENDING and inp.ticket == ticket]
        self.pending.clear()
        self.n_pending = 0
        for inp in drained:
            inp.state = InputState.DONE
        return drained

    def take(self, task: Task, max_inputs: int, now: float) -> list[Input]:
        if task.stop_requested:
            return []
        if self.function.single_use:
            if task.served:
                return []
            max_inputs = 1
        taken: list[Input] = []
        pending = self.pending
        while pending and len(taken) < max_inputs:
            ticket, inp = pending.popleft()
            if inp.ticket != ticket or inp.state is not InputState.PENDING:
                continue
            self.n_pending -= 1
            inp.state = InputState.LEASED
            inp.task = task
            if not inp.held_by or inp.held_by[-1] != task.task_id:
                inp.held_by.append(task.task_id)
            inp.started_at = now
            inp.seen_at = now
            task.leased[inp.input_id] = inp
            taken.append(inp)
        if taken:
            task.served += len(taken)
            self.last_active = now
        return taken

    def park(self, task: Task, max_inputs: int) -> asyncio.Future[list[Input]]:
        future: asyncio.Future[list[Input]] = asyncio.get_running_loop().create_future()
        self.waiters.append(Waiter(task, max_inputs, future))
        return future

    def unpark(self, future: asyncio.Future[list[Input]]) -> None:
        """Drop a finished long-poll's waiter so idle pools don't accumulate them."""
        for waiter in self.waiters:
            if waiter.future is future:
                self.waiters.remove(waiter)
                break

    def release_waiters(self, task: Task) -> None:
        """Answer a stopping task's parked long-polls now (with no inputs)."""
        for waiter in self.waiters:
            if waiter.task is task and not waiter.future.done():
                waiter.future.set_result([])

    def _serve_waiters(self, now: float) -> None:
        passed: list[Waiter] = []
        while self.waiters and self.n_pending:
            waiter = self.waiters.popleft()
            if waiter.future.done():
                continue
            batch = self.take(waiter.task, waiter.max, now)
            if batch or waiter.task.stop_requested:
                waiter.future.set_result(batch)
            else:  # a single-use task that already ran its input keeps waiting for its stop
                passed.append(waiter)
        self.waiters.extendleft(reversed(passed))


class Pools:
    def __init__(self, on_backlog: Callable[[], None]) -> None:
        self._pools: dict[PoolKey, Pool] = {}
        self._on_backlog = on_backlog

    def get(self, function: FunctionEntry, params: bytes | None) -> Pool:
        key = (function.function_id, params or b"")
        pool = self._pools.get(key)
        if pool is None:
            pool = Pool(function, params, self._on_backlog)
            self._pools[key] = pool
        return pool

    def find(self, function_id: str, params: bytes | None) -> Pool | None:
        return self._pools.get((function_id, params or b""))

    def all(self) -> list[Pool]:
        return list(self._pools.values())

    def of_function(self, function_id: str) -> list[Pool]:
        return [p for p in self._pools.values() if p.function.function_id == function_id]

    def unused(self, pool: Pool) -> bool:
        """Nothing refers to it: it can go (it is made again on the next call)."""
        return not (pool.tasks or pool.n_pending or pool.n_calls or pool.waiters)

    def drop(self, pool: Pool) -> None:
        if self._pools.get(pool.key) is pool:
            del self._pools[pool.key]
