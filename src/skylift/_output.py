"""What `run`/`deploy` show while they work, and the container logs they stream.

Status lines go to stderr so that a program's own stdout stays clean for pipes; container
stdout/stderr go to this process's stdout/stderr. Output is off for `with app.run()` unless
`skylift.enable_output()` is active, as in Modal; the CLI turns it on (`-q` turns it off).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

_enabled = 0
_lock = threading.Lock()


@contextlib.contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    """Show object creation, image builds and container logs for `app.run()` / `app.deploy()`."""
    global _enabled
    with _lock:
        _enabled += 1
    try:
        yield
    finally:
        with _lock:
            _enabled -= 1


def is_enabled() -> bool:
    return _enabled > 0


def _color(code: str, text: str) -> str:
    if sys.stderr.isatty():
        return f"\033[{code}m{text}\033[0m"
    return text


def step(message: str) -> None:
    if is_enabled():
        print(f"{_color('32', '✓')} {message}", file=sys.stderr, flush=True)


def item(message: str, last: bool = False) -> None:
    if is_enabled():
        print(f"{'└──' if last else '├──'} {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    if is_enabled():
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(_color("33", message), file=sys.stderr, flush=True)


def build_log(line: str) -> None:
    if is_enabled():
        print(_color("2", f"    {line.rstrip()}"), file=sys.stderr, flush=True)


def container_log(stream: str, text: str) -> None:
    if not is_enabled():
        return
    target = sys.stderr if stream in ("stderr", "system") else sys.stdout
    if stream == "system":
        text = _color("2", text)
    target.write(text if text.endswith("\n") else text + "\n")
    target.flush()


class Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:.2f}s"
