"""The caller rides out a control-plane `kill -9` and restart: every result once, correct, in order.

A real platform subprocess is killed with SIGKILL mid-call and started again on the same home
(same socket); the SDK reconnects, re-sends with the same idempotency keys, re-starts the sync
calls the new control plane doesn't know and resumes reading outputs (docs/exactly-once.md).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps import core

import skylift as modal
from skylift import _client, _local_server
from skylift.exception import ConnectionError, ControlPlaneUnavailableError
from skylift.testing import local_platform

N = 2000


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _local_server._pid_alive(pid):  # a zombie (our child) counts as dead
        time.sleep(0.02)


def _restart(home: Path) -> int:
    """kill -9 the control plane of `home` and start it again there; returns the new pid."""
    info = _local_server.read_info(home)
    assert info is not None
    _kill(info.pid)
    return _local_server.start(home, quiet=True).pid


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    with local_platform(home):
        core.app.deploy(name="e2e-once")
        yield home


def test_a_2k_map_survives_a_control_plane_restart_in_the_middle(home: Path) -> None:
    square = modal.Function.from_name("e2e-once", "square")
    expected = [x * x for x in range(N)]
    assert list(square.map(range(50))) == expected[:50]  # warm: only the restart brings a cold start
    started = time.monotonic()
    assert list(square.map(range(N))) == expected
    plain = time.monotonic() - started

    results = []
    started = time.monotonic()
    for i, value in enumerate(square.map(range(N))):
        results.append(value)
        if i == N // 2:
            _restart(home)
    restarted = time.monotonic() - started
    assert results == expected  # every index once, correct, in order
    print(f"\n2k .map: {plain:.2f} s without a restart, {restarted:.2f} s with one kill -9 + restart in the middle")


def test_remote_and_spawned_calls_survive_a_restart(home: Path) -> None:
    slow = modal.Function.from_name("e2e-once", "slow")
    square = modal.Function.from_name("e2e-once", "square")
    assert square.remote(3) == 9  # connected
    spawned = slow.spawn(1.0)
    box: dict[str, object] = {}
    caller = threading.Thread(target=lambda: box.update(remote=slow.remote(1.5)), daemon=True)
    caller.start()
    time.sleep(0.5)  # .remote() is waiting for its output, spawn's input is stored
    _restart(home)
    caller.join(90)
    assert box.get("remote") == 1.5
    assert spawned.get(timeout=60) == 1.0
    # FunctionCall.get across a restart: the spawned result is read back from the store.
    _restart(home)
    assert modal.FunctionCall.from_id(spawned.object_id).get(timeout=60) == 1.0
    assert square.remote(4) == 16


def test_a_spawn_map_survives_a_restart_between_batches(home: Path) -> None:
    square = modal.Function.from_name("e2e-once", "square")
    assert square.remote(2) == 4

    def items() -> Iterator[int]:
        for i in range(2500):  # three batches; the control plane dies while the second is built
            if i == 1500:
                _restart(home)
            yield i

    square.spawn_map(items())
    # One call, every index stored once, every input run to one output.
    deadline = time.monotonic() + 120
    while True:
        with sqlite3.connect(f"file:{home / 'state.db'}?mode=ro", uri=True) as db:
            calls = db.execute("SELECT id, state, num_inputs, closed FROM calls WHERE kind = 'map'").fetchall()
            [(call_id, state, num_inputs, closed)] = calls
            inputs = db.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM inputs WHERE call_id = ?",
                                (call_id,)).fetchone()
            outputs = db.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM outputs WHERE call_id = ?",
                                 (call_id,)).fetchone()
        if state not in ("pending", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (state, num_inputs, closed) == ("success", 2500, 1)
    assert inputs == (2500, 2500) and outputs == (2500, 2500)


def test_after_the_retry_window_the_caller_gets_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = _local_server.read_info(home)
    assert info is not None
    # A server the client doesn't own (SKYLIFT_SERVER_URL): it reconnects but never restarts it.
    monkeypatch.setenv("SKYLIFT_SERVER_URL", info.unix_url)
    monkeypatch.setenv("SKYLIFT_TOKEN", info.token)
    monkeypatch.setenv(_client.ENV_RETRY_WINDOW, "2")
    _client.reset_default_client()
    square = modal.Function.from_name("e2e-once", "square")
    assert square.remote(5) == 25
    _kill(info.pid)
    started = time.monotonic()
    with pytest.raises(ControlPlaneUnavailableError, match=r"within 2 s") as raised:
        square.remote(6)
    assert info.unix_url in str(raised.value) and isinstance(raised.value, ConnectionError)
    assert time.monotonic() - started < 30
    monkeypatch.delenv("SKYLIFT_SERVER_URL")
    monkeypatch.delenv("SKYLIFT_TOKEN")
    _client.reset_default_client()


def test_a_map_of_an_ephemeral_app_survives_a_restart(home: Path) -> None:
    # `with app.run()`: the app lives while its client heartbeats; that carries over the restart too.
    with core.app.run():
        results = []
        for i, value in enumerate(core.square.map(range(300))):
            results.append(value)
            if i == 100:
                _restart(home)
        assert results == [x * x for x in range(300)]
        assert core.square.remote(7) == 49


def test_the_client_starts_a_dead_embedded_platform_again(home: Path) -> None:
    square = modal.Function.from_name("e2e-once", "square")
    assert square.remote(2) == 4
    info = _local_server.read_info(home)
    assert info is not None
    _kill(info.pid)  # and nobody restarts it: after REVIVE_AFTER the client does
    assert square.remote(3) == 9
    again = _local_server.read_info(home)
    assert again is not None and again.pid != info.pid
