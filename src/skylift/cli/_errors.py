"""How the CLI reports a failed command: one place, so every command reads the same.

  * skylift's own errors (`skylift.exception.Error`) about the command: `Error: <message>`, which
    names the fix;
  * the user's exceptions, local or remote, and skylift errors raised in the user's code (a bad
    `@app.function(...)` argument, a missing Dict): the user's frames and the error
    (`skylift._traceback`), platform frames hidden;
  * with SKYLIFT_TRACEBACK=1 (or MODAL_TRACEBACK=1, or `skylift --traceback`): the whole traceback.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from .. import _traceback
from ..exception import Error


def enable_full(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """`skylift --traceback`: the same as SKYLIFT_TRACEBACK=1, for this command and what it starts."""
    if value:
        os.environ[_traceback.ENV_FULL[0]] = "1"


def full_requested() -> bool:
    """Whether to let the exception through whole (Python prints every frame)."""
    return _traceback.full_requested()


def report(exc: BaseException) -> NoReturn:
    """Print `exc` for a user and exit 1."""
    remote = getattr(exc, "__skylift_remote_traceback__", None)
    if isinstance(exc, Error) and not remote and not _traceback.has_user_frames(exc):
        message, _ = _traceback.trim_text(str(exc))  # an ExecutionError may quote a container's traceback
        click.secho(f"Error: {message}", fg="red", err=True)
    else:
        sys.stderr.flush()
        click.echo(_traceback.format_user_traceback(exc).rstrip("\n"), err=True)
    sys.exit(1)
