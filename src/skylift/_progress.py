"""The live display `run`/`deploy` show on a terminal: image builds and `.map` progress, drawn with rich.

Only `_output` imports this module, and only once output is on and stderr is a terminal, so neither
`import skylift` nor a piped run pays for rich (as Modal keeps rich out of its containers).

The display is a `rich.live.Live` on stderr holding what is in progress: a spinner per image being
built (its current step and how long it has run) and a bar per `.map` (done/total, rate, the function's
containers). Everything else — the app tree, build logs, container logs, and this process's own prints
while sys.stdout/sys.stderr share the terminal — is printed *above* it: the live region is erased, the
text written to its own stream (container stdout stays on stdout), and the region drawn again. A new
`Live` is made for each redraw because a stopped one remembers the height it last drew and would erase
the lines just printed. Redraws after a burst of log lines are coalesced to one per event-loop turn and
happen at most every MIN_REDRAW_GAP; a ticker thread animates spinners, bars and elapsed times.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.spinner import Spinner
from rich.text import Text

TICK_SECONDS = 0.1  # spinner frames and elapsed times
# A redraw renders the whole region (~0.5-1 ms for a bar); a flood of log lines redraws at most this often
# (the ticker draws what a skipped redraw left out), so printing stays cheap whatever the log volume.
MIN_REDRAW_GAP = 0.05
CONTAINER_POLL_SECONDS = 0.5


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s", style="progress.data.speed")


class _ContainersColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        n = task.fields.get("containers")
        if n is None:
            return Text("")
        return Text(f"{n} container{'s' if n != 1 else ''}", style="cyan")


@dataclass
class _Build:
    image_id: str
    label: str
    spinner: Spinner = field(default_factory=lambda: Spinner("dots", style="blue"))
    step: str = ""
    step_started: float = field(default_factory=time.monotonic)


class LiveDisplay:
    """What is in progress, drawn below the lines printed so far; thread-safe."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else Console(file=sys.stderr, highlight=False)
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._redraw_pending = False
        self._last_draw = 0.0
        self._hiding = False
        self._ticking = False
        # This process's own prints (results of a map printed as they come, warnings) pass above the
        # region too, when their stream shares its terminal; container output is written to the real ones.
        self._stdout, self._stderr = sys.stdout, sys.stderr
        self._partial: dict[int, str] = {}
        for name in ("stdout", "stderr"):
            real = getattr(sys, name)
            if _is_terminal(real):
                setattr(sys, name, _Passage(self, real))
        self._builds: dict[int, _Build] = {}
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  _RateColumn(), _ContainersColumn(), TimeElapsedColumn(), console=self.console)
        self._maps: set[TaskID] = set()
        self._closed = threading.Event()
        atexit.register(self.close)  # never leave the terminal with a hidden cursor

    # -- printing above the live region ----------------------------------------------------------

    def print(self, text: str | Text, *, style: str | None = None) -> None:
        """A status line on stderr, above what is in progress."""
        with self._lock:
            self._erase()
            self.console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)
            self._redraw_soon()

    def write(self, stream: str, text: str) -> None:
        """Container output, unchanged, to this process's stdout or stderr, above what is in progress."""
        if stream == "system":
            self.print(Text(text.rstrip("\n"), style="dim"))
            return
        target = self._stdout if stream == "stdout" else self._stderr
        with self._lock:
            self._write_lines(target, text if text.endswith("\n") else text + "\n")

    def _write_lines(self, target: Any, text: str) -> None:
        if self._live is None or not _is_terminal(target):
            target.write(text)  # nothing drawn, or a pipe: the region on the terminal is unaffected
            target.flush()
            return
        self._erase()
        target.write(text)
        target.flush()
        self._redraw_soon()

    def passage(self, target: Any, text: str) -> None:
        """A write to sys.stdout/sys.stderr on the display's terminal: whole lines go above the region."""
        with self._lock:
            pending = self._partial.pop(id(target), "") + text
            if self._live is None:
                target.write(pending)
                return
            head, newline, rest = pending.rpartition("\n")
            if rest:
                self._partial[id(target)] = rest  # a line's start waits for its end, or for the region to go
            if newline:
                self._write_lines(target, head + newline)

    # -- image builds ------------------------------------------------------------------------------

    def start_build(self, key: int, image_id: str, label: str) -> None:
        with self._lock:
            self._builds[key] = _Build(image_id, label)
            self._changed()

    def build_step(self, key: int, step: str) -> None:
        with self._lock:
            build = self._builds.get(key)
            if build is not None:
                build.step, build.step_started = step, time.monotonic()

    def end_build(self, key: int) -> None:
        with self._lock:
            self._builds.pop(key, None)
            self._changed()

    # -- function calls ----------------------------------------------------------------------------

    def start_map(self, name: str, total: int | None) -> TaskID:
        with self._lock:
            task = self._progress.add_task(name, total=total, containers=None)
            self._maps.add(task)
            self._changed()
            return task

    def advance(self, task: TaskID, n: int) -> None:
        with self._lock:
            self._progress.advance(task, n)

    def set_containers(self, task: TaskID, n: int) -> None:
        with self._lock:
            if task in self._maps:
                peak = max(n, self._progress.tasks[self._progress.task_ids.index(task)].fields.get("peak") or 0)
                self._progress.update(task, containers=n, peak=peak)

    def end_map(self, task: TaskID, *, completed: bool) -> None:
        """Drop the bar; a map that ran to its end leaves one line saying what it did."""
        with self._lock:
            if task not in self._maps:
                return
            self._maps.discard(task)
            info = self._progress.tasks[self._progress.task_ids.index(task)]
            elapsed = info.elapsed or 0.0
            peak = info.fields.get("peak") or 0
            self._progress.remove_task(task)
            self._changed()
            if completed:
                rate = info.completed / elapsed if elapsed > 0 else 0.0
                line = Text.assemble(("✓", "green"), f" {info.description}: {info.completed:,.0f} inputs in "
                                     f"{elapsed:.2f}s ({rate:,.0f}/s"
                                     + (f", up to {peak} container{'s' if peak != 1 else ''}" if peak else "")
                                     + ").")
                self.print(line)

    # -- the live region ---------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            self._builds.clear()
            for task in list(self._maps):
                self._progress.remove_task(task)
            self._maps.clear()
            self._erase()
            for name, real in (("stdout", self._stdout), ("stderr", self._stderr)):
                passage = getattr(sys, name)
                if isinstance(passage, _Passage) and passage.display is self:
                    setattr(sys, name, real)
        atexit.unregister(self.close)

    def _active(self) -> bool:
        return bool(self._builds or self._maps) and not self._closed.is_set()

    def _render(self) -> RenderableType:
        with self._lock:
            parts: list[RenderableType] = []
            if self._hiding:
                return Group()
            now = time.monotonic()
            for build in self._builds.values():
                # One line, cut to the terminal's width: the running time first so that it stays in view.
                text = Text(f"Building image {build.image_id[:11]}… for {build.label}")
                if build.step:
                    text.append(f" {now - build.step_started:.1f}s", style="cyan")
                    text.append(f" {build.step}")
                build.spinner.update(text=text)
                line = build.spinner.render(now)
                if isinstance(line, Text):
                    line.no_wrap, line.overflow = True, "ellipsis"
                parts.append(line)
            if self._maps:
                parts.append(self._progress)
            return Group(*parts)

    def _erase(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            # stop() draws once more before erasing; drawing nothing makes that the erase itself.
            self._hiding = True
            try:
                live.stop()  # transient: the cursor is left where the region began
            finally:
                self._hiding = False
            for target in (self._stdout, self._stderr):
                rest = self._partial.pop(id(target), "")
                if rest:
                    target.write(rest)

    def _draw(self) -> None:
        with self._lock:
            self._redraw_pending = False
            if self._live is None and self._active():
                self._live = Live(get_renderable=self._render, console=self.console, auto_refresh=False,
                                  transient=True, redirect_stdout=False, redirect_stderr=False)
                self._live.start(refresh=True)
                self._last_draw = time.monotonic()
            elif self._live is not None and not self._active():
                self._erase()

    def _redraw_soon(self) -> None:
        """Draw again after this event-loop turn (a batch of log lines costs one redraw), or now."""
        if not self._active():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._draw_if_due()
            return
        if not self._redraw_pending:
            self._redraw_pending = True
            loop.call_soon(self._draw_if_due)

    def _draw_if_due(self) -> None:
        with self._lock:
            self._redraw_pending = False
            if time.monotonic() - self._last_draw >= MIN_REDRAW_GAP:
                self._draw()

    def _changed(self) -> None:
        self._draw()
        if self._active() and not self._ticking:
            self._ticking = True
            threading.Thread(target=self._tick, name="skylift-progress", daemon=True).start()

    def _tick(self) -> None:
        while not self._closed.wait(TICK_SECONDS):
            with self._lock:
                if not self._active():
                    self._ticking = False  # under the lock: _changed starts another when work comes back
                    self._erase()
                    return
                if self._live is None:
                    self._draw()
                else:
                    self._live.refresh()


class _Passage:
    """Stands in for sys.stdout/sys.stderr while a live display shares their terminal."""

    def __init__(self, display: LiveDisplay, real: Any) -> None:
        self.display, self.real = display, real

    def write(self, text: str) -> int:
        self.display.passage(self.real, text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer, …
        return getattr(self.real, name)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


async def tracked_map(display: LiveDisplay, name: str, total: int | None,
                      make_batches: Callable[[Callable[[int], None] | None], AsyncIterator[list[Any]]],
                      containers: Callable[[], Awaitable[int]]) -> AsyncIterator[list[Any]]:
    """A map's results, passed through while a bar counts its outputs as they arrive (not as ordering
    releases them: a slow first input doesn't hold the bar at 0) and the function's containers."""
    task = display.start_map(name, total)
    batches = make_batches(lambda n: display.advance(task, n))

    async def poll() -> None:
        while True:
            with contextlib.suppress(Exception):
                display.set_containers(task, await containers())
            await asyncio.sleep(CONTAINER_POLL_SECONDS)

    poller = asyncio.get_running_loop().create_task(poll())
    completed = False
    try:
        async for values in batches:
            yield values
        completed = True
    finally:
        poller.cancel()  # not awaited: a map cancelled with its caller must not wait on a poll
        display.end_map(task, completed=completed)
        aclose = getattr(batches, "aclose", None)
        if aclose is not None and not completed:
            await aclose()
