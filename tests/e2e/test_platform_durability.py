"""Nothing accepted is lost: a spawned call survives `kill -9` of the control plane."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from apps import core

import skylift as modal
from skylift import _client
from skylift.testing import local_platform


def _wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def test_spawned_call_survives_kill_9_of_the_control_plane(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with local_platform(home) as first:
        core.app.deploy(name="e2e-durable")
        fn = modal.Function.from_name("e2e-durable", "slow")
        call = fn.spawn(1.5)
        os.kill(first.pid, signal.SIGKILL)
        _wait_dead(first.pid)
        _client.reset_default_client()
        # The next client finds no live control plane, starts a new one on the same home, and the
        # spawned call, written to SQLite before spawn() returned, runs to completion there.
        assert modal.FunctionCall.from_id(call.object_id).get(timeout=60) == 1.5
        assert modal.Function.from_name("e2e-durable", "square").remote(5) == 25
