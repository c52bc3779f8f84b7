"""What the running code can ask about where it runs (`is_local`, `current_input_id`)."""

from __future__ import annotations

import contextvars
import os

from ._protocol import api

current_input_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("skylift_input_id", default=None)
current_call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("skylift_call_id", default=None)


def is_local() -> bool:
    """False only inside a container running a skylift Function."""
    return os.environ.get(api.ENV_TASK_ID) is None


def current_input_id() -> str | None:
    """The id (`in-…`) of the input being processed, inside a container; None elsewhere."""
    return current_input_id_var.get()


def current_function_call_id() -> str | None:
    """The id (`fc-…`) of the call being processed, inside a container; None elsewhere."""
    return current_call_id_var.get()
