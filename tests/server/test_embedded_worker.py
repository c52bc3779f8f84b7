"""The embedded worker's supervisor: restarts a dying agent with backoff, stops it on shutdown."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from skylift.server import embedded_worker
from skylift.server.embedded_worker import WorkerSupervisor


def test_the_supervisor_runs_the_worker_module_against_the_unix_socket(home: Path) -> None:
    supervisor = WorkerSupervisor("unix:///x/server.sock", home)
    assert supervisor.command == [sys.executable, "-m", "skylift.worker", "--server-url", "unix:///x/server.sock",
                                  "--token-file", str(home / "worker_token"), "--home", str(home), "--exit-with-parent",
                                  "--parent-pid", str(os.getpid())]


async def test_a_dying_worker_is_restarted_with_backoff(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_worker, "MIN_BACKOFF", 0.05)
    starts = home / "starts"
    supervisor = WorkerSupervisor("unix:///unused", home)
    supervisor.command = [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('x')"]
    supervisor.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(starts.read_text() if starts.exists() else "") < 3:
        await asyncio.sleep(0.05)
    await supervisor.stop()
    assert len(starts.read_text()) >= 3


async def test_stop_terminates_a_running_worker(home: Path) -> None:
    supervisor = WorkerSupervisor("unix:///unused", home)
    supervisor.command = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor.start()
    while supervisor._proc is None:
        await asyncio.sleep(0.01)
    proc = supervisor._proc
    started = time.monotonic()
    await supervisor.stop()
    assert proc.returncode is not None and time.monotonic() - started < 5
