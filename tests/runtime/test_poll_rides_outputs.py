"""A container's next poll rides on its `put_outputs` (four messages a warm call, not six)."""

from __future__ import annotations

import asyncio
import sys

import cloudpickle
from runtime_peer import Peer, definition
from test_runtime import drive, stop_and_wait, value

# Functions below travel by value, as with serialized=True: the container can't import this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def double(x: int) -> int:
    return 2 * x


def _polls(peer: Peer, method: str) -> list[dict[str, object]]:
    return [c[2] for c in peer.calls if c[1] == method]


def test_back_to_back_calls_lease_through_put_outputs(tmp_path):
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        for n in range(4):
            [out] = await peer.wait_outputs([peer.add_input(n)])
            assert value(out) == 2 * n
        # One separate poll (the first input's); every later input came on an output's answer.
        assert len(_polls(peer, "container.get_inputs")) == 1
        puts = _polls(peer, "container.put_outputs")
        assert len(puts) == 4 and all(p.get("next") for p in puts)
        # Nothing else runs here, so each carried a long-poll, not a peek.
        assert all(p["next"]["timeout"] > 0 for p in puts)  # type: ignore[index]
        # A stop answered on the ride ends the container.
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(double), scenario)


def test_sigterm_during_a_riding_poll_exits_at_once(tmp_path):
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        [out] = await peer.wait_outputs([peer.add_input(1)])
        assert value(out) == 2
        while not _polls(peer, "container.put_outputs"):
            await asyncio.sleep(0.01)
        assert peer.process is not None
        peer.process.terminate()
        # The riding poll would stay open for POLL_SECONDS (50 s); the container doesn't wait for it.
        assert await peer.wait_exit(timeout=12) == 0

    drive(tmp_path, definition(double), scenario)
