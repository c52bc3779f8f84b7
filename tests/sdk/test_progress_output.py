"""What `run` shows while it works: a live rich display on a terminal, plain lines elsewhere.

The terminal path draws on a forced-terminal rich Console writing to a StringIO; the plain path is a
real `skylift run` in a subprocess (no TTY). See skylift/_output.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from rich.console import Console

import skylift
from skylift import _output, _progress
from skylift.functions import _known_length

FIXTURE = Path(__file__).parent / "progress_fixture_app.py"
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def terminal() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(force_terminal=True, file=buffer, width=100, color_system="standard"), buffer


def test_build_steps_are_timed_from_the_worker_log_markers() -> None:
    timer = _output.StepTimer()
    assert timer.feed("=> [1/3] debian_slim(python_version='3.11') (cached)", 0.0) == (None, None)
    assert timer.feed("=> [2/3] run_commands(commands=['make'])", 1.0) == ("[2/3] run_commands(commands=['make'])",
                                                                         None)
    assert timer.feed("cc -O2 main.c", 2.0) == (None, None)
    started, ended = timer.feed("=> [3/3] env(vars={'A': '1'})", 4.5)
    assert started == "[3/3] env(vars={'A': '1'})" and ended == ("[2/3] run_commands(commands=['make'])", 3.5)
    assert timer.feed("=> image im-1 ready", 5.0) == (None, ("[3/3] env(vars={'A': '1'})", 0.5))
    assert timer.finish(6.0) is None


def test_a_line_redrawn_with_carriage_returns_shows_what_a_terminal_would() -> None:
    assert _output.terminal_line("(Reading database ... \r(Reading database ... 5%\r(Reading database ... 100%\r"
                                 "(Reading database ... 6403 files and directories currently installed.)\r") == \
        "(Reading database ... 6403 files and directories currently installed.)"
    assert _output.terminal_line("E: Unable to locate package nope") == "E: Unable to locate package nope"


def test_known_length_is_the_shortest_sized_iterable() -> None:
    assert _known_length(range(10), [1, 2, 3]) == 3
    assert _known_length(range(10), iter([1])) is None
    assert _known_length() is None


def test_the_live_region_stays_below_logs_which_keep_their_streams(capsys: pytest.CaptureFixture[str]) -> None:
    console, buffer = terminal()
    with _output.use_console(console), skylift.enable_output():
        _output.step("Initialized. App ap-1 in environment 'main'.")
        with _output.image_build("im-abc", "f") as build:
            build.log("=> [1/2] debian_slim(python_version='3.11') (cached)")
            build.log("=> [2/2] run_commands(commands=['make'])")
            build.log("building things")
            _output.container_log("stdout", "a container's stdout line")
            _output.container_log("stderr", "a container's stderr line")
            build.log("=> image im-abc ready")
        _output.item("🔨 Created function f.", last=True)
    drawn = buffer.getvalue()
    shown = ESCAPE.sub("", drawn)
    assert "✓ Initialized. App ap-1" in shown and "└── 🔨 Created function f." in shown
    assert "Building image im-abc… for f" in shown  # the spinner, with its step
    assert re.search(r"✓ \[2/2\] run_commands\(commands=\['make'\]\) in \d+\.\d\ds", shown)
    assert re.search(r"✓ Built image im-abc in \d+\.\d\ds\.", shown)
    # Container output went to this process's own streams, not through the display's console.
    out, err = capsys.readouterr()
    assert out == "a container's stdout line\n" and err == "a container's stderr line\n"
    assert "container's" not in shown
    # The spinner was erased (erase line) before the lines after it, and the cursor is shown again.
    last_spinner = drawn.rindex("Building image im-abc")
    assert "\x1b[2K" in drawn[last_spinner:drawn.index("Built image im-abc in")]
    assert drawn.count("\x1b[?25l") == drawn.count("\x1b[?25h") >= 1
    assert "rich" in sys.modules  # the terminal path imported it; the import test below checks the other


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_prints_of_this_process_pass_above_the_live_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "MIN_REDRAW_GAP", 0.0)  # redraw after every line, not at most every 50 ms
    tty = FakeTerminal()  # stdout and the display share it, as they share a terminal
    monkeypatch.setattr(sys, "stdout", tty)
    console = Console(force_terminal=True, file=tty, width=80)
    with _output.use_console(console), skylift.enable_output(), _output.image_build("im-p", "g") as build:
        assert sys.stdout is not tty  # the display, made at its first use, passes prints above itself
        build.log("=> [1/1] run_commands(commands=['x'])")
        print("a result", end="")  # half a line waits for its end
        print(" printed by the caller")
        _output.container_log("stdout", "a container's line")
    assert sys.stdout is tty
    drawn = tty.getvalue()
    for line in ("a result printed by the caller\n", "a container's line\n"):
        at = drawn.index(line)
        # Written after the region drawn before it was erased, and the region drawn again after it.
        assert drawn.rindex("\x1b[2K", 0, at) > drawn.rindex("Building image im-p", 0, at)
        assert "Building image im-p" in drawn[at:]


def test_the_bar_counts_outputs_as_they_arrive_though_ordering_holds_them_back() -> None:
    """With order_outputs a slow first input holds every result back; the bar still shows what is done."""
    console, _ = terminal()
    done_while_held: list[float] = []

    def make_batches(arrived: Callable[[int], None] | None) -> AsyncIterator[list[int]]:
        async def outputs() -> AsyncIterator[list[int]]:
            assert arrived is not None
            arrived(299)  # all but the first input finished: nothing can be given to the caller yet
            display = _output._live()
            assert display is not None
            done_while_held.append(display._progress.tasks[0].completed)
            arrived(1)
            yield list(range(300))
        return outputs()

    async def containers() -> int:
        return 1

    async def consume() -> list[int]:
        return [v for batch in [b async for b in _output.track_map("slow.map", 300, make_batches, containers)]
                for v in batch]

    with _output.use_console(console), skylift.enable_output():
        assert asyncio.run(consume()) == list(range(300))
    assert done_while_held == [299]


def _fixture_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("progress_fixture_app", FIXTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["progress_fixture_app"] = module
    spec.loader.exec_module(module)
    return module


def test_map_progress_counts_to_the_total_on_a_terminal(platform: object) -> None:
    app_module = _fixture_module()
    console, buffer = terminal()
    with _output.use_console(console), skylift.enable_output(), app_module.app.run():
        results = list(app_module.square.map(range(300)))
    assert results == [x * x for x in range(300)]
    shown = ESCAPE.sub("", buffer.getvalue())
    assert re.search(r"square\.map .*0/300", shown)  # the bar, drawn as the map started
    assert re.search(r"✓ square\.map: 300 inputs in \d+\.\d\ds \([\d,]+/s", shown)
    assert "Created function square." in shown and "App completed." in shown


def test_plain_lines_without_a_terminal(platform) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "SKYLIFT_HOME": str(platform.home)}
    proc = subprocess.run([sys.executable, "-m", "skylift.cli.main", "run", str(FIXTURE), "--n", "200"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sum 2646700" in proc.stdout
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr  # no escape codes, no redrawn lines
    lines = proc.stderr.splitlines()
    assert any(line.startswith("✓ Initialized. App ap-") for line in lines)
    assert any(line.startswith("└── 🔨 Created function square") for line in lines)
    assert any(re.fullmatch(r"    ✓ \[\d/\d\] run_commands\(.*progress-fixture-step.*\) in \d+\.\d\ds", line)
               for line in lines), proc.stderr
    assert any(re.fullmatch(r"✓ Built image im-\w+ in \d+\.\d\ds\.", line) for line in lines)
    assert not any("square.map" in line for line in lines)  # no map progress off a terminal, as in Modal
    assert "✓ App completed." in lines


def test_neither_import_skylift_nor_plain_output_imports_rich() -> None:
    code = ("import sys, skylift\nfrom skylift import _output\nprint('rich' in sys.modules)\n"
            "with skylift.enable_output():\n"
            "    _output.step('Initialized.')\n    _output.container_log('stdout', 'a line')\n"
            "print('rich' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "a", "line", "False"], out.stderr
    assert out.stderr == "✓ Initialized.\n"
