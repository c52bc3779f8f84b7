"""Batches of a `@modal.batched` method's inputs, formed for the input loop."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .input_state import Input
from .user_code import Target

if TYPE_CHECKING:
    from .inputs import InputLoop


class _Batcher:
    """Forms batches of one method's inputs: full, or `wait_ms` after the first one arrived."""

    def __init__(self, owner: InputLoop, target: Target) -> None:
        assert target.batch is not None
        self.owner = owner
        self.target = target
        self.max_size, self.wait_ms = target.batch
        self.pending: list[Input] = []
        self.timer: asyncio.TimerHandle | None = None

    def add(self, inp: Input) -> None:
        self.pending.append(inp)
        if len(self.pending) >= self.max_size:
            self.flush()
        elif self.timer is None:
            self.timer = self.owner.loop.call_later(self.wait_ms / 1000, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch = [inp for inp in self.pending if not inp.done]
        self.pending = []
        if batch:
            self.owner._dispatch(self.target, batch)
