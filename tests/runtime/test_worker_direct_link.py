"""A single-slot container of a sync function sends a lone input's output from its worker thread,
over its own connection, and runs the next input there (`_runtime/direct.py`)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import cloudpickle
import pytest
from runtime_peer import Peer, definition
from test_runtime import drive, stop_and_wait, value

from skylift._protocol import api
from skylift._protocol.rpc import RpcError
from skylift._protocol.rpc_server import Session

# Functions below travel by value, as with serialized=True: the container can't import this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def spin(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return "finished"


def square(x: int) -> int:
    time.sleep(0.01 * (x == 0))
    return x * x


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Which connection (session id) each container method came on."""
    seen: dict[str, list[int]] = {}
    for name in ("_init", "_put_outputs", "_get_inputs", "_heartbeat"):
        original = getattr(Peer, name)

        async def wrapped(self: Peer, session: Session, params: dict[str, Any], *,
                          _original: Any = original, _name: str = name) -> dict[str, Any]:
            seen.setdefault(_name, []).append(id(session))
            result: dict[str, Any] = await _original(self, session, params)
            return result

        monkeypatch.setattr(Peer, name, wrapped)
    return seen


def test_warm_outputs_and_next_inputs_travel_on_the_worker_threads_connection(tmp_path, sessions):
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        for n in range(5):
            [out] = await peer.wait_outputs([peer.add_input(n)])
            assert value(out) == n * n
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(square), scenario)
    [main] = sessions["_init"]
    puts = sessions["_put_outputs"]
    assert len(puts) >= 5
    assert main not in puts[:5]  # every output of a lone input went on the worker thread's connection
    assert len(set(puts[:5])) == 1  # one connection, kept
    assert sessions["_get_inputs"] == [main]  # inputs after the first came on those outputs' answers


def test_an_input_that_came_on_the_direct_link_is_heartbeated_and_cancelled(tmp_path, sessions):
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        assert value((await peer.wait_outputs([peer.add_input(0)]))[0]) == "finished"
        busy = peer.add_input(30)  # leased on the first output's answer, run by the worker thread
        while not any(busy in beat for beat in peer.heartbeats):
            await asyncio.sleep(0.05)
        peer.cancel_ids = [busy]
        [output] = await peer.wait_outputs([busy], timeout=10)
        assert output["status"] == api.STATUS_TERMINATED
        # The container goes on serving.
        assert value((await peer.wait_outputs([peer.add_input(0)]))[0]) == "finished"
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(spin), scenario, SKYLIFT_HEARTBEAT_INTERVAL="0.1")


def test_a_burst_answered_on_the_direct_link_runs_the_loops_way(tmp_path):
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        [first] = await peer.wait_outputs([peer.add_input(1)])
        assert value(first) == 1
        # While the next one runs, a burst queues up: the direct poll's answer carries it.
        ids = [peer.add_input(0)] + [peer.add_input(n) for n in range(2, 12)]
        outputs = await peer.wait_outputs(ids)
        assert [value(o) for o in outputs] == [0] + [n * n for n in range(2, 12)]
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(square), scenario)


def test_sigterm_during_a_direct_long_poll_exits_at_once(tmp_path, sessions):
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        [out] = await peer.wait_outputs([peer.add_input(3)])
        assert value(out) == 9
        assert peer.process is not None
        peer.process.terminate()
        # The direct long-poll would stay open for POLL_SECONDS (50 s); the container doesn't wait.
        assert await peer.wait_exit(timeout=12) == 0

    drive(tmp_path, definition(square), scenario)
    [main] = sessions["_init"]
    # The output went on the worker thread's connection; cut from its poll, it is sent again the
    # loop's way (outputs are idempotent), with no poll now that the container stops.
    assert sessions["_put_outputs"][0] != main


def test_a_failed_direct_send_goes_the_loops_way_and_the_next_input_dials_again(tmp_path, monkeypatch):
    original = Peer._put_outputs
    seen: list[int] = []
    main: list[int] = []
    original_init = Peer._init

    async def init(self: Peer, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        main.append(id(session))
        result: dict[str, Any] = await original_init(self, session, params)
        return result

    async def put_outputs(self: Peer, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        seen.append(id(session))
        if id(session) not in main and len(seen) == 1:
            raise RpcError("unavailable", "the control plane is restarting")  # the first direct send fails
        result: dict[str, Any] = await original(self, session, params)
        return result

    monkeypatch.setattr(Peer, "_init", init)
    monkeypatch.setattr(Peer, "_put_outputs", put_outputs)

    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        for n in range(4):
            [out] = await peer.wait_outputs([peer.add_input(n)])
            assert value(out) == n * n
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(square), scenario)
    assert seen[0] not in main and seen[1] in main  # refused on the link, re-sent the loop's way
    assert any(s not in main and s != seen[0] for s in seen[2:])  # later outputs on a new link


def test_a_burst_is_not_left_behind_a_direct_long_poll(tmp_path):
    """The worker thread must not long-poll (holding the only thread) while inputs it handed to
    the loop wait to be queued: they would wait for the poll's 50 s."""

    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        for round_ in range(5):
            [first] = await peer.wait_outputs([peer.add_input(1)])
            assert value(first) == 1
            ids = [peer.add_input(n) for n in range(1, 9)]  # all quick: the first is done at once
            outputs = await peer.wait_outputs(ids, timeout=20)  # (under the poll's 50 s)
            assert [value(o) for o in outputs] == [n * n for n in range(1, 9)], round_
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(square), scenario)
