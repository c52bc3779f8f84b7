"""The process runtime with real subprocesses: output capture, exit codes, stop and kill."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from skylift.worker.process_runtime import ProcessRuntime
from skylift.worker.runtime import ContainerSpec, RuntimeNotSupported


def spec(tmp_path: Path, code: str, task_id: str = "ta-1") -> ContainerSpec:
    return ContainerSpec(task_id=task_id, argv=[sys.executable, "-c", textwrap.dedent(code)],
                         env={"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", "MARKER": "in-container"},
                         cwd=tmp_path / "cwd", image_root=tmp_path)


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, task_id: str, stream: str, text: str) -> None:
        self.lines.append((task_id, stream, text))
        self.changed.set()

    async def wait_for(self, text: str, timeout: float = 10) -> None:
        async def seen() -> None:
            while not any(line[2] == text for line in self.lines):
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(seen(), timeout)


def test_output_is_captured_line_by_line_with_streams(tmp_path: Path) -> None:
    async def main() -> None:
        runtime, lines = ProcessRuntime(), Lines()
        s = spec(tmp_path, """
            import os, sys
            print("hello from", os.environ["MARKER"])
            print("to stderr", file=sys.stderr)
            sys.stdout.write("x" * 70000 + "\\nno newline at the end")
            sys.exit(3)
        """)
        await runtime.prepare(s)
        await runtime.start(s, lines)
        assert await runtime.wait("ta-1") == 3
        assert ("ta-1", "stdout", "hello from in-container") in lines.lines
        assert ("ta-1", "stderr", "to stderr") in lines.lines
        stdout = [text for _, stream, text in lines.lines if stream == "stdout"]
        assert [len(t) for t in stdout[1:3]] == [65536, 70000 - 65536]  # a runaway line is split
        assert stdout[-1] == "no newline at the end"
        assert runtime.running() == []

    asyncio.run(main())


def test_stop_sends_sigterm_and_the_container_exits_on_its_own(tmp_path: Path) -> None:
    async def main() -> None:
        runtime, lines = ProcessRuntime(), Lines()
        s = spec(tmp_path, """
            import signal, sys, time
            def bye(*_):
                print("draining"); sys.exit(0)
            signal.signal(signal.SIGTERM, bye)
            print("ready")
            time.sleep(60)
        """)
        await runtime.prepare(s)
        await runtime.start(s, lines)
        await lines.wait_for("ready")
        assert runtime.running() == ["ta-1"]
        await runtime.stop("ta-1", grace=10)
        assert await asyncio.wait_for(runtime.wait("ta-1"), 10) == 0
        assert ("ta-1", "stdout", "draining") in lines.lines

    asyncio.run(main())


def test_a_container_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    async def main() -> None:
        runtime, lines = ProcessRuntime(), Lines()
        s = spec(tmp_path, """
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("ready")
            time.sleep(60)
        """)
        await runtime.prepare(s)
        await runtime.start(s, lines)
        await lines.wait_for("ready")
        await runtime.stop("ta-1", grace=0.3)
        assert await asyncio.wait_for(runtime.wait("ta-1"), 10) == 128 + signal.SIGKILL

    asyncio.run(main())


def test_kill_takes_the_whole_process_group(tmp_path: Path) -> None:
    async def main() -> None:
        runtime, lines = ProcessRuntime(), Lines()
        s = spec(tmp_path, """
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            print("child", child.pid)
            time.sleep(60)
        """)
        await runtime.prepare(s)
        await runtime.start(s, lines)
        while not any(text.startswith("child ") for _, _, text in lines.lines):
            lines.changed.clear()
            await asyncio.wait_for(lines.changed.wait(), 10)
        child_pid = int(next(text for _, _, text in lines.lines if text.startswith("child ")).split()[1])
        stats = await runtime.stats("ta-1")
        assert stats.pids == 2 and stats.rss_bytes > 0
        await runtime.stop("ta-1", kill=True)
        assert await asyncio.wait_for(runtime.wait("ta-1"), 10) == 128 + signal.SIGKILL
        for _ in range(100):
            if not Path(f"/proc/{child_pid}").exists() or "Z" in Path(f"/proc/{child_pid}/stat").read_text().split()[2]:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the container's child process outlived it")

    asyncio.run(main())


def test_exec_runs_in_the_containers_environment(tmp_path: Path) -> None:
    async def main() -> None:
        runtime, lines = ProcessRuntime(), Lines()
        s = spec(tmp_path, "import time; print('ready'); time.sleep(60)")
        await runtime.prepare(s)
        await runtime.start(s, lines)
        result = await runtime.exec("ta-1", ["/bin/sh", "-c", "echo $MARKER; pwd"])
        assert result.exit_code == 0
        assert result.output.split() == ["in-container", str(tmp_path / "cwd")]
        with pytest.raises(RuntimeNotSupported, match="process runtime"):
            await runtime.checkpoint("ta-1", tmp_path / "ckpt")
        await runtime.stop("ta-1", kill=True)
        await runtime.wait("ta-1")

    asyncio.run(main())
