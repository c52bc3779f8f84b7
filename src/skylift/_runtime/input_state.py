"""One leased input's state, shared by the input loop, its worker threads and its batchers."""

from __future__ import annotations

import asyncio
from typing import Any

from .container_io import GenStream
from .user_code import Target


class Input:
    """One leased input and its progress."""

    __slots__ = ("args", "attempt", "call_id", "cancelled", "done", "injected", "input_id", "job_size",
                 "method", "ran", "started", "stream", "task", "thread_ident")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.input_id: str = raw["input_id"]
        self.call_id: str | None = raw.get("call_id")
        self.attempt: int = raw.get("attempt", 0)
        self.args: bytes = raw["args"]
        self.method: str | None = raw.get("method")
        self.task: asyncio.Task[None] | None = None
        self.thread_ident: int | None = None
        self.stream: GenStream | None = None
        self.started = 0.0
        self.ran = 0.0  # how long a sync input ran, measured in its thread
        self.job_size = 1
        self.cancelled = False
        self.injected = False
        self.done = False


Job = tuple[Target, list[Input]]
