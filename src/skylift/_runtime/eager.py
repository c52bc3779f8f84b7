"""Start a coroutine of the runtime's own at once, as Python 3.12's eager tasks do.

`FinalSender` must have written its batch of web responses before the outputs of those requests
go out, and it is called from a callback: a task for the call would write only in a later step,
after an output sender's step that may already be queued. `start` runs the coroutine until it
first waits (the request is written by then) and only the rest becomes a task.

Not for user code: during the eager part `asyncio.current_task()` is not the task that carries the
coroutine on, which anyio's task groups and `asyncio.timeout` rely on.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any


def start(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run `coro` until it first waits; None if it finished, else the task that carries it on.

    Exceptions the coroutine raises before it first waits propagate to the caller."""
    context = contextvars.copy_context()
    try:
        waiting = context.run(coro.send, None)
    except StopIteration:
        return None
    return loop.create_task(_carry_on(coro, waiting), context=context)  # type: ignore[arg-type]


@types.coroutine
def _carry_on(coro: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, Any]:
    """Hand the task what `coro` waits on (a future, or None for a bare yield), then pass what
    the task sends or throws (a result, a cancellation) into `coro`, until it returns."""
    while True:
        try:
            value = yield waiting
        except BaseException as exc:
            try:
                waiting = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting = coro.send(value)
            except StopIteration as stop:
                return stop.value
