"""`.map()` across control planes that forget its call: every index once, correct, in order.

The SDK's map loop (`_invocation.map_outputs`) runs against `Forgetful`, a miniature control plane
that answers the `call.*` methods the way the real one does and, at chosen moments, restarts:
it forgets every sync call, outputs it computed but never handed over included. Which restarts,
where and how outputs interleave are drawn from a seed, so each case is reproducible.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from skylift import _invocation, _serialization
from skylift._invocation import Target
from skylift._protocol import api
from skylift.exception import NotFoundError


class Forgetful:
    """Enough of a control plane for a sync map, with `restart()` at the n-th request of a kind."""

    def __init__(self, seed: int, restart_at: dict[str, set[int]]) -> None:
        self.random = random.Random(seed)
        self.restart_at = restart_at
        self.seen: Counter[str] = Counter()
        self.calls: dict[str, dict[str, Any]] = {}
        self.executed: Counter[int] = Counter()
        self.restarts = 0
        self.ids = 0

    def restart(self) -> None:
        self.calls.clear()
        self.restarts += 1

    def _new_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}-{self.ids}"

    def _call(self, call_id: str) -> dict[str, Any]:
        if call_id not in self.calls:
            raise NotFoundError(f"no open call {call_id!r}")
        return self.calls[call_id]

    def _add(self, call: dict[str, Any], items: list[dict[str, Any]]) -> list[str]:
        ids = []
        for item in items:
            (x,), _ = _serialization.deserialize(item["args"])
            index = len(call["input_ids"])
            input_id = self._new_id("in")
            call["input_ids"].append(input_id)
            self.executed[x] += 1
            call["ready"].append({"index": index, "input_id": input_id, "status": api.STATUS_SUCCESS,
                                  "data": _serialization.serialize(x * x)})
            ids.append(input_id)
        return ids

    async def call(self, method: str, params: dict[str, Any] | None = None, *, retry: bool = True) -> Any:
        await asyncio.sleep(0)  # let the feeder and the reader interleave
        assert params is not None
        self.seen[method] += 1
        if self.seen[method] in self.restart_at.get(method, set()):
            self.restart()
        if method == "call.start":
            assert params["invocation"] == "sync" and params["kind"] == "map" and params["idempotency_key"]
            call_id = self._new_id("call")
            self.calls[call_id] = call = {"input_ids": [], "ready": [], "closed": False, "last_take": None}
            return {"call_id": call_id, "input_ids": self._add(call, params["inputs"])}
        if method == "call.put_inputs":
            call = self._call(params["call_id"])
            have, start = len(call["input_ids"]), params["start_index"]
            assert start <= have and not call["closed"]
            self._add(call, params["inputs"][have - start:])
            return {"input_ids": call["input_ids"][start:start + len(params["inputs"])]}
        if method == "call.close_inputs":
            call = self._call(params["call_id"])
            assert params["total"] == len(call["input_ids"])
            call["closed"] = True
            return {}
        if method == "call.get_outputs":
            call = self._call(params["call_id"])
            if call["last_take"] is not None and call["last_take"][0] == params["idempotency_key"]:
                return {"outputs": call["last_take"][1], "done": False}
            ready = call["ready"]
            self.random.shuffle(ready)  # outputs complete in any order
            n = self.random.randint(0, len(ready))
            taken, call["ready"] = ready[:n], ready[n:]
            call["last_take"] = (params["idempotency_key"], taken)
            return {"outputs": taken, "done": call["closed"] and not call["ready"] and len(taken) == 0}
        if method == "call.cancel":
            return {}
        raise AssertionError(f"unexpected {method}")


async def _map(server: Forgetful, n: int, order_outputs: bool) -> list[Any]:
    target = Target("fu-1", "square")
    results: list[Any] = []
    async for values in _invocation.map_outputs(server, target, ((x,) for x in range(n)), {},  # type: ignore[arg-type]
                                                order_outputs=order_outputs, return_exceptions=False):
        results.extend(values)
    return results


@pytest.mark.parametrize("seed", range(12))
def test_a_map_delivers_every_index_once_whatever_the_control_plane_forgets(seed: int,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_invocation, "MAP_BATCH", 7)
    monkeypatch.setattr(_invocation, "MAX_OUTSTANDING", 30)
    rng = random.Random(seed)
    restart_at = {"call.get_outputs": set(rng.sample(range(2, 60), 4)),
                  "call.put_inputs": set(rng.sample(range(2, 30), 2))}
    server = Forgetful(seed, restart_at)
    n = 200
    results = asyncio.run(_map(server, n, order_outputs=seed % 3 != 0))
    if seed % 3 != 0:
        assert results == [x * x for x in range(n)]
    else:
        assert sorted(results) == sorted(x * x for x in range(n))
    assert server.restarts >= 1
    assert set(server.executed) == set(range(n))  # a forgotten input runs again; its result counts once


def test_a_map_gives_up_when_every_call_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_invocation, "MAP_BATCH", 5)

    class Amnesiac(Forgetful):
        def _call(self, call_id: str) -> dict[str, Any]:
            raise NotFoundError(f"no open call {call_id!r}")

    with pytest.raises(NotFoundError, match="lost the call"):
        asyncio.run(_map(Amnesiac(0, {}), 20, order_outputs=True))
