"""Tasks: the control plane's record of each container, with an explicit state machine.

    STARTING ──▶ RUNNING ──▶ READY ──▶ STOPPING ──▶ EXITED
        └───────────┴──────────┴──────────┴───────────▲

STARTING: `start_task` is queued for a worker. RUNNING: the worker reports the process up (or the
container called in). READY: `@enter` hooks are done and inputs flow. STOPPING: told to drain
(scale-down, redeploy, app stop) or killed (timeout, cancel). EXITED: gone; its leases were
settled. Transitions outside the table are ignored, so late or repeated reports are harmless.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._protocol import ids
from .profiles import ColdStart

if TYPE_CHECKING:
    from ..policy.placement import Placed
    from .queues import Input, Pool


class TaskState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    READY = "ready"
    STOPPING = "stopping"
    EXITED = "exited"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.STARTING: frozenset({TaskState.RUNNING, TaskState.READY, TaskState.STOPPING, TaskState.EXITED}),
    TaskState.RUNNING: frozenset({TaskState.READY, TaskState.STOPPING, TaskState.EXITED}),
    TaskState.READY: frozenset({TaskState.STOPPING, TaskState.EXITED}),
    TaskState.STOPPING: frozenset({TaskState.EXITED}),
    TaskState.EXITED: frozenset(),
}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(eq=False)
class Task:
    task_id: str
    token_hash: str
    pool: Pool
    worker_id: str
    placed: Placed
    created_at: float
    state: TaskState = TaskState.STARTING
    leased: dict[str, Input] = field(default_factory=dict)
    idle_since: float = 0.0
    last_seen: float = 0.0
    served: int = 0
    connected: bool = False
    ever_ready: bool = False
    init_failed: bool = False
    stop_requested: bool = False
    stop_reason: str = ""
    stop_deadline: float | None = None
    kill_sent: bool = False
    cancel_ids: set[str] = field(default_factory=set)
    exit_code: int | None = None
    disconnected_at: float | None = None
    reserved: bool = False  # its resources are counted on its worker
    # The definition it was started with: a redeploy changes the function's, not this one's.
    definition: dict[str, Any] = field(default_factory=dict)
    profile: ColdStart = field(init=False)

    def __post_init__(self) -> None:
        self.profile = ColdStart(self.created_at)

    def __repr__(self) -> str:
        return f"Task({self.task_id}, {self.state.value}, leased={len(self.leased)})"

    def accepts(self, token: str) -> bool:
        return hmac.compare_digest(token_hash(token), self.token_hash)

    def advance(self, state: TaskState) -> bool:
        if state in TRANSITIONS[self.state]:
            self.state = state
            return True
        return False

    @property
    def starting(self) -> bool:
        return self.state in (TaskState.STARTING, TaskState.RUNNING)

    @property
    def alive(self) -> bool:
        return self.state is not TaskState.EXITED

    def release(self, inp: Input, now: float) -> None:
        if self.leased.pop(inp.input_id, None) is not None and not self.leased:
            self.idle_since = now


@dataclass(frozen=True)
class TaskOrigin:
    """What a task belongs to (the app and function its logs are filed under)."""

    app_id: str
    function_tag: str


# Exited tasks whose origin is remembered, for their last log lines (which arrive after the exit).
RECENT_EXITS = 10_000


class Tasks:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._exited: collections.OrderedDict[str, TaskOrigin] = collections.OrderedDict()

    def create(self, pool: Pool, worker_id: str, placed: Placed, now: float) -> tuple[Task, str]:
        """A new task and its token (which only the container gets; we keep its hash)."""
        token = secrets.token_urlsafe(24)
        task = Task(task_id=ids.new_id("task"), token_hash=token_hash(token), pool=pool, worker_id=worker_id,
                    placed=placed, created_at=now, idle_since=now, last_seen=now,
                    definition=pool.function.definition)
        self.add(task)
        return task, token

    def add(self, task: Task) -> None:
        self._tasks[task.task_id] = task
        task.pool.tasks[task.task_id] = task

    def origin(self, task_id: str) -> TaskOrigin | None:
        task = self._tasks.get(task_id)
        if task is not None:
            return TaskOrigin(task.pool.function.app.app_id, task.pool.function.tag)
        return self._exited.get(task_id)

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def all(self) -> list[Task]:
        return list(self._tasks.values())

    def forget(self, task: Task) -> None:
        if self._tasks.pop(task.task_id, None) is not None:
            self._exited[task.task_id] = TaskOrigin(task.pool.function.app.app_id, task.pool.function.tag)
            if len(self._exited) > RECENT_EXITS:
                self._exited.popitem(last=False)
        if task.pool.tasks.get(task.task_id) is task:
            del task.pool.tasks[task.task_id]

    def of_app(self, app_id: str) -> list[Task]:
        return [t for t in self._tasks.values() if t.pool.function.app.app_id == app_id]

    def of_worker(self, worker_id: str) -> list[Task]:
        return [t for t in self._tasks.values() if t.worker_id == worker_id]
