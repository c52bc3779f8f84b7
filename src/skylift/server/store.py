"""What the control plane persists, behind a small `Store` protocol.

Everything that must outlive the process goes through here: apps and their deployed versions,
function definitions, spawned (async) calls with their inputs and outputs, logs and images.
Sync call inputs never touch the store: their caller is connected and starts them again if the
control plane dies (docs/exactly-once.md), so persisting them would only slow the hot path down.

The protocol is synchronous and is driven from one dedicated thread (`Database`), which keeps
SQLite's single writer simple and lets a PostgreSQL implementation use a plain driver. Records are
plain dataclasses; definitions and outputs are msgpack-native dicts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


@dataclass
class AppRecord:
    app_id: str
    name: str | None
    environment: str
    state: str
    created_at: float
    stopped_at: float | None = None
    description: str | None = None
    strict_containers: bool = False
    owner_task: str = ""


@dataclass
class VersionRecord:
    app_id: str
    version: int
    deployed_at: float
    tag: str | None
    commit_info: str | None
    function_ids: dict[str, str]


@dataclass
class FunctionRecord:
    function_id: str
    app_id: str
    tag: str
    definition: dict[str, Any]
    created_at: float
    autoscaler_override: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallRecord:
    call_id: str
    function_id: str
    params: bytes | None
    kind: str
    state: str
    num_inputs: int
    closed: bool
    created_at: float
    finished_at: float | None = None
    parent_input_id: str | None = None


@dataclass
class InputRecord:
    input_id: str
    call_id: str
    index: int
    args: bytes
    method: str | None
    attempt: int = 1


@dataclass
class OutputRecord:
    input_id: str
    call_id: str
    index: int
    output: dict[str, Any]
    created_at: float


@dataclass
class LogRecord:
    seq: int
    app_id: str
    task_id: str
    function_tag: str
    stream: str
    text: str
    ts: float


@dataclass
class TaskRecord:
    """A container, kept so that it can reconnect after a control-plane restart."""

    task_id: str
    token_hash: str  # sha256 of its token: the token itself is never stored
    function_id: str
    params: bytes | None
    worker_id: str
    cpu: float
    memory_mb: int
    gpu_type: str | None
    gpu_count: int
    created_at: float


@dataclass
class ImageRecord:
    image_id: str
    definition: dict[str, Any]
    status: str
    error: str | None = None
    built_at: float | None = None


class Store(Protocol):
    def close(self) -> None: ...

    # apps
    def insert_app(self, app: AppRecord) -> None: ...
    def set_app_state(self, app_id: str, state: str, stopped_at: float | None) -> None: ...
    def set_app_strict(self, app_id: str, strict: bool) -> None: ...
    def get_app(self, app_id: str) -> AppRecord | None: ...
    def list_apps(self, environment: str | None) -> list[AppRecord]: ...
    def add_version(self, app_id: str, deployed_at: float, tag: str | None, commit_info: str | None,
                    function_ids: dict[str, str]) -> int: ...
    def list_versions(self, app_id: str) -> list[VersionRecord]: ...

    # functions
    def insert_function(self, function: FunctionRecord) -> None: ...
    def set_function_definition(self, function_id: str, definition: dict[str, Any]) -> None: ...
    def set_autoscaler_override(self, function_id: str, override: dict[str, Any]) -> None: ...
    def get_function(self, function_id: str) -> FunctionRecord | None: ...
    def list_functions(self, app_id: str) -> list[FunctionRecord]: ...

    # durable (async) calls
    def insert_call(self, call: CallRecord, inputs: list[InputRecord], key: str | None = None) -> None:
        """Store a call, its first inputs and its idempotency key (if any) in one transaction."""
        ...
    def call_for_key(self, key: str) -> str | None:
        """The call stored with idempotency key `key` (kept as long as the call)."""
        ...
    def input_ids(self, call_id: str, start_index: int, limit: int) -> list[str]: ...
    def add_inputs(self, call_id: str, inputs: list[InputRecord], num_inputs: int) -> None: ...
    def close_call(self, call_id: str, num_inputs: int) -> None: ...
    def set_attempts(self, attempts: list[tuple[str, int]]) -> None: ...
    def record_outputs(self, outputs: list[OutputRecord], finished: list[tuple[str, str, float]]) -> None:
        """Store outputs (their inputs are done) and mark calls finished: (call_id, state, at)."""
        ...
    def get_call(self, call_id: str) -> CallRecord | None: ...
    def unfinished_calls(self) -> list[CallRecord]: ...
    def pending_inputs(self, call_id: str) -> list[InputRecord]: ...
    def get_outputs(self, call_id: str, start_index: int, limit: int) -> list[OutputRecord]: ...
    def expire_calls(self, finished_before: float) -> int:
        """Drop inputs and outputs of calls finished before the cutoff; the call is marked expired."""
        ...

    # logs
    def append_logs(self, entries: list[LogRecord]) -> list[int]: ...
    def read_logs(self, app_id: str, after_seq: int, limit: int) -> list[LogRecord]: ...
    def prune_logs(self, before: float) -> int: ...

    # containers
    def insert_task(self, task: TaskRecord) -> None: ...
    def delete_task(self, task_id: str) -> None: ...
    def list_tasks(self) -> list[TaskRecord]: ...

    # images
    def put_image(self, image: ImageRecord) -> None: ...
    def get_image(self, image_id: str) -> ImageRecord | None: ...


class Database:
    """Runs `Store` methods on one dedicated thread, off the event loop.

    One thread serialises every write (SQLite has one writer anyway) and keeps the connection on
    the thread that made it. Reads during startup may call the store directly (`store`).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="skylift-store")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()
