"""Options shared by every command."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .. import config


def env_option(f: Callable[..., Any]) -> Callable[..., Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            config.set_environment_override(value)
        return value

    return click.option("-e", "--env", "env", default=None, expose_value=False, callback=callback,
                        help="Environment to use (default: SKYLIFT_ENVIRONMENT or 'main').")(f)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    import datetime

    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
