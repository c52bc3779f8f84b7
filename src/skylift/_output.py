"""What `run`/`deploy` show while they work, and the container logs they stream.

Status lines go to stderr so that a program's own stdout stays clean for pipes; container stdout/stderr
go to this process's stdout/stderr. Output is off for `with app.run()` unless `skylift.enable_output()` is
active, as in Modal; the CLI turns it on (`-q` turns it off).

Two ways to show it, chosen when something is first shown:

- **A terminal** (stderr is a TTY and `show_progress` is on): a live display drawn with rich (`_progress`)
  shows what is in progress — each image build's current step and its running time, a bar per `.map`
  (done/total, rate, the function's containers) — while the app tree, build logs and container logs
  print above it.
- **Anything else** (a pipe, a file, CI): plain lines, no escape codes. Image builds print each step's
  duration; a `.map` prints no progress lines, as Modal's output does when it isn't on a terminal.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from ._progress import LiveDisplay

_enabled = 0
_show_progress: list[bool] = []
_lock = threading.RLock()
_display: LiveDisplay | None = None
_console: Console | None = None  # set by use_console (tests, or an embedding program's own console)


@contextlib.contextmanager
def enable_output(show_progress: bool = True) -> Iterator[None]:
    """Show object creation, image builds and container logs for `app.run()` / `app.deploy()`.

    On a terminal, image builds and `.map` calls show live progress; `show_progress=False` prints plain
    lines instead.
    """
    global _enabled
    with _lock:
        _enabled += 1
        _show_progress.append(show_progress)
    try:
        yield
    finally:
        with _lock:
            _enabled -= 1
            _show_progress.pop()
            if _enabled == 0:
                _close_display()


def is_enabled() -> bool:
    return _enabled > 0


@contextlib.contextmanager
def use_console(console: Console) -> Iterator[None]:
    """Draw the live display on `console` (e.g. `Console(force_terminal=True, file=StringIO())` in tests)."""
    global _console
    with _lock:
        _close_display()
        _console = console
    try:
        yield
    finally:
        with _lock:
            _close_display()
            _console = None


def _close_display() -> None:
    global _display
    if _display is not None:
        _display.close()
        _display = None


def _live() -> LiveDisplay | None:
    """The live display, when output is on and goes to a terminal; None for plain lines."""
    global _display
    innermost = _show_progress[-1:]  # a slice: another thread may leave the last enable_output meanwhile
    if not innermost or not innermost[0]:
        return None
    if _display is not None:
        return _display
    with _lock:
        if _display is None and (_console is not None or _is_terminal()):
            from ._progress import LiveDisplay

            _display = LiveDisplay(_console)
        return _display


def _is_terminal() -> bool:
    import os

    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def _color(code: str, text: str) -> str:
    if sys.stderr.isatty():
        return f"\033[{code}m{text}\033[0m"
    return text


# The plain form's colour codes for the styles _line takes.
_CODES = {"green": "32", "yellow": "33", "dim": "2", "grey50": "90"}


def _line(message: str, *, mark: str = "", color: str = "", style: str = "") -> None:
    """A status line on stderr: an optional coloured `mark` (✓), then `message` in `style` (a rich style)."""
    display = _live()
    if display is None:
        text = f"{_color(_CODES[color], mark) if color else mark} {message}" if mark else message
        print(_color(_CODES[style], text) if style else text, file=sys.stderr, flush=True)
        return
    from rich.text import Text

    display.print(Text.assemble((f"{mark} ", color) if mark else "", (message, style)))


def step(message: str) -> None:
    if is_enabled():
        _line(message, mark="✓", color="green")


def item(message: str, last: bool = False) -> None:
    if is_enabled():
        _line(message, mark="└──" if last else "├──", color="grey50")  # Modal's tree guides


def info(message: str) -> None:
    if is_enabled():
        _line(message)


def warn(message: str) -> None:
    _line(message, style="yellow")


def build_log(line: str) -> None:
    if not is_enabled():
        return
    _line(f"    {terminal_line(line)}", style="dim")


def terminal_line(line: str) -> str:
    """What a terminal would leave of a line that redraws itself with carriage returns (apt, pip, curl)."""
    line = line.rstrip().rstrip("\r")
    return line[line.rfind("\r") + 1:] if "\r" in line else line


def container_log(stream: str, text: str) -> None:
    if not is_enabled():
        return
    display = _live()
    if display is not None:
        display.write(stream, text)
        return
    target = sys.stderr if stream in ("stderr", "system") else sys.stdout
    if stream == "system":
        text = _color("2", text)
    line = text if text.endswith("\n") else text + "\n"
    # The log thread writes while the user's code may print from another thread: a TextIOWrapper's
    # pending text is not safe to share (a line in ~2,000 was lost), its BufferedWriter is (it locks).
    binary = getattr(target, "buffer", None)
    if binary is None:
        target.write(line)
        target.flush()
        return
    binary.write(line.encode(getattr(target, "encoding", None) or "utf-8", "backslashreplace"))
    binary.flush()


class Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:.2f}s"


# -- image builds -----------------------------------------------------------------------------------

# The worker logs `=> [i/n] step(args)` as each layer starts, `… (cached)` for one it has, and
# `=> image <id> ready` at the end (worker/images.py); a step runs from its line to the next marker.
_STEP_LINE = re.compile(r"=> \[(\d+/\d+)\] (.*)")


class StepTimer:
    """Times an image build's steps from its log's markers; pure, with the clock passed in."""

    def __init__(self) -> None:
        self.current: tuple[str, float] | None = None

    def feed(self, line: str, now: float) -> tuple[str | None, tuple[str, float] | None]:
        """(the step this line starts, or None; (the step it ends, its seconds), or None)."""
        match = _STEP_LINE.fullmatch(line.strip())
        if match is None and not line.startswith("=> image "):
            return None, None
        ended = self.finish(now)
        started = None
        if match is not None and not match.group(2).endswith("(cached)"):
            started = f"[{match.group(1)}] {match.group(2)}"
            self.current = (started, now)
        return started, ended

    def finish(self, now: float) -> tuple[str, float] | None:
        ended = None if self.current is None else (self.current[0], now - self.current[1])
        self.current = None
        return ended


class ImageBuild:
    """One image build being shown: its log lines and each step's duration."""

    def __init__(self, image_id: str, label: str) -> None:
        self.image_id, self.label = image_id, label
        self.timer = Timer()
        self.steps = StepTimer()

    def log(self, line: str) -> None:
        started, ended = self.steps.feed(line, time.monotonic())
        if ended is not None:
            self._ended(*ended)
        build_log(line)
        display = _live()
        if started is not None and display is not None:
            display.build_step(id(self), started)

    def _ended(self, step_name: str, seconds: float) -> None:
        if not is_enabled():
            return
        _line(f"    ✓ {step_name} in {seconds:.2f}s", style="dim")


@contextlib.contextmanager
def image_build(image_id: str, label: str) -> Iterator[ImageBuild]:
    """Show an image build while the block streams its log into the yielded `ImageBuild`."""
    build = ImageBuild(image_id, label)
    info(f"Building image {image_id} for {label}")
    display = _live()
    if display is not None:
        display.start_build(id(build), image_id, label)
    try:
        yield build
    finally:
        if display is not None:
            display.end_build(id(build))
    ended = build.steps.finish(time.monotonic())
    if ended is not None:
        build._ended(*ended)
    step(f"Built image {image_id} in {build.timer}.")


# -- function calls ---------------------------------------------------------------------------------


def track_map(name: str, total: int | None,
              batches: Callable[[Callable[[int], None] | None], AsyncIterator[list[Any]]],
              containers: Callable[[], Awaitable[int]]) -> AsyncIterator[list[Any]]:
    """A `.map`'s batches of results (`batches(arrived)` makes them, telling `arrived` of each output
    as it comes), counted on the live display; `batches(None)` itself when there is none."""
    display = _live()
    if display is None:
        return batches(None)
    from ._progress import tracked_map

    return tracked_map(display, name, total, batches, containers)
