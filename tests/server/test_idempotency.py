"""Idempotency keys: a re-sent call.start / call.run / batch / poll never creates or loses anything."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from conftest import definition
from skylift._protocol import api
from skylift._protocol.rpc import ErrorCode, RpcError
from skylift.server.execution.idempotency import KEY_TTL


def _start(ids: dict[str, str], args: list[bytes], *, invocation: str, kind: str = "map", more: bool = False,
           key: str = "k1") -> dict[str, Any]:
    return {"function_id": ids["f"], "inputs": [{"args": a} for a in args], "invocation": invocation, "kind": kind,
            "more_inputs": more, "idempotency_key": key}


async def _drain(container: Any, expect: int) -> list[dict[str, Any]]:
    """Every input handed to `container` until `expect` arrived and nothing more comes for a moment."""
    got: list[dict[str, Any]] = []
    while True:
        batch = (await container.get_inputs(max=100, timeout=0.5 if len(got) >= expect else 5.0))["inputs"]
        if not batch:
            return got
        got.extend(batch)


async def test_a_spawn_whose_answer_was_lost_is_one_call_even_across_a_restart(platform):
    async with platform() as h:
        client = await h.client()
        await h.worker()
        _, ids = await h.app(client, definition(), name="keys")
        first = await client.call("call.start", _start(ids, [b"a"], invocation="async", kind="unary"))
        again = await client.call("call.start", _start(ids, [b"a"], invocation="async", kind="unary"))
        assert again == first
        other = await client.call("call.start", _start(ids, [b"a"], invocation="async", kind="unary", key="k2"))
        assert other["call_id"] != first["call_id"]
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        # The key was stored with the call: after a restart the retry still finds it.
        assert await client.call("call.start", _start(ids, [b"a"], invocation="async", kind="unary")) == first
        h.advance(h.cp.settings.reconnect_grace + 1)
        container = await h.started_container(worker)
        inputs = await _drain(container, 2)
        assert sorted(i["input_id"] for i in inputs) == sorted(first["input_ids"] + other["input_ids"])


async def test_concurrent_repeats_of_a_spawn_wait_for_the_first_and_share_its_call(platform):
    async with platform() as h:
        client = await h.client()
        second = await h.client()
        _, ids = await h.app(client)
        answers = await asyncio.gather(
            client.call("call.start", _start(ids, [b"0", b"1"], invocation="async")),
            second.call("call.start", _start(ids, [b"0", b"1"], invocation="async")),
        )
        assert answers[0] == answers[1]
        assert len(h.cp.calls.calls) == 1


async def test_a_spawn_map_interrupted_between_batches_resumes_with_every_input_once(platform):
    async with platform() as h:
        client = await h.client()
        await h.worker()
        _, ids = await h.app(client)
        started = await client.call("call.start", _start(ids, [b"0", b"1"], invocation="async", more=True))
        call_id = started["call_id"]
        await client.call("call.put_inputs", {"call_id": call_id, "inputs": [{"args": b"2"}, {"args": b"3"}],
                                              "start_index": 2})
    # The control plane restarted before the client heard back about batch 2; it re-sends the first
    # call.start (its answer could have been lost too) and batch 2, then goes on.
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        assert await client.call("call.start", _start(ids, [b"0", b"1"], invocation="async", more=True)) == started
        batch = await client.call("call.put_inputs", {"call_id": call_id, "inputs": [{"args": b"2"}, {"args": b"3"}],
                                                      "start_index": 2})
        again = await client.call("call.put_inputs", {"call_id": call_id, "inputs": [{"args": b"2"}, {"args": b"3"}],
                                                      "start_index": 2})
        assert again == batch and len(set(batch["input_ids"])) == 2
        await client.call("call.put_inputs", {"call_id": call_id, "inputs": [{"args": b"4"}], "start_index": 4})
        await client.call("call.close_inputs", {"call_id": call_id, "total": 5})
        await client.call("call.close_inputs", {"call_id": call_id, "total": 5})  # a re-sent close is fine
        h.advance(h.cp.settings.reconnect_grace + 1)
        container = await h.started_container(worker)
        inputs = await _drain(container, 5)
        assert sorted(i["args"] for i in inputs) == [b"0", b"1", b"2", b"3", b"4"]
        await container.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": api.STATUS_SUCCESS,
                                   "data": i["args"]} for i in inputs])
        got = await client.call("call.get_outputs", {"call_id": call_id, "timeout": 5, "clear": False})
        assert [o["data"] for o in got["outputs"]] == [b"0", b"1", b"2", b"3", b"4"] and got["done"]
        info = await client.call("call.info", {"call_id": call_id})
        assert info["num_inputs"] == 5 and info["state"] == api.STATUS_SUCCESS


async def test_a_resent_remote_gets_the_first_output_and_runs_once(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        params = {"function_id": ids["f"], "input": {"args": b"x"}, "timeout": 10, "idempotency_key": "r1"}
        first = asyncio.ensure_future(client.call("call.run", params))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        # A repeat while it runs (the first connection was cut) waits for the same input.
        other = await h.client()
        repeat = asyncio.ensure_future(other.call("call.run", params))
        await asyncio.sleep(0.1)
        await container.put(inp, data=b"X")
        assert (await first)["output"]["data"] == b"X"
        assert (await repeat)["output"]["data"] == b"X"
        # And after it finished (its answer lost), the same output again.
        late = await client.call("call.run", params)
        assert late["output"]["data"] == b"X" and late["call_id"] == (await first)["call_id"]
        assert (await container.get_inputs(max=10, timeout=0.3))["inputs"] == []
        # Keys of sync calls are forgotten after KEY_TTL: the same key then starts a new call.
        h.advance(KEY_TTL + 1)
        fresh = asyncio.ensure_future(client.call("call.run", params))
        [inp] = await container.next_inputs()
        await container.put(inp, data=b"Y")
        assert (await fresh)["output"]["data"] == b"Y"


async def test_a_map_resends_batches_and_polls_without_duplicates_or_losses(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        started = await client.call("call.start", _start(ids, [b"0", b"1"], invocation="sync", more=True))
        assert await client.call("call.start", _start(ids, [b"0", b"1"], invocation="sync", more=True)) == started
        call_id = started["call_id"]
        put = {"call_id": call_id, "inputs": [{"args": b"2"}], "start_index": 2}
        assert await client.call("call.put_inputs", put) == await client.call("call.put_inputs", put)
        await client.call("call.close_inputs", {"call_id": call_id, "total": 3})
        container = await h.started_container(worker)
        inputs = await _drain(container, 3)
        assert sorted(i["args"] for i in inputs) == [b"0", b"1", b"2"]
        await container.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": api.STATUS_SUCCESS,
                                   "data": i["args"]} for i in inputs])
        poll = {"call_id": call_id, "timeout": 5, "clear": True, "idempotency_key": "p1"}
        got = await client.call("call.get_outputs", poll)
        assert got["done"] and sorted(o["data"] for o in got["outputs"]) == [b"0", b"1", b"2"]
        # That answer was lost: the same poll again answers the same outputs; a new key has none left.
        assert await client.call("call.get_outputs", poll) == got
        left = await client.call("call.get_outputs", {**poll, "idempotency_key": "p2", "timeout": 0})
        assert left == {"outputs": [], "done": True}


async def test_a_key_is_scoped_to_its_function_and_checked(platform):
    async with platform() as h:
        client = await h.client()
        _, ids = await h.app(client, definition("f"), definition("g"))
        a = await client.call("call.start", _start(ids, [b"0"], invocation="async", kind="unary"))
        b = await client.call("call.start", {**_start(ids, [b"0"], invocation="async", kind="unary"),
                                             "function_id": ids["g"]})
        assert a["call_id"] != b["call_id"]
        try:
            await client.call("call.start", _start(ids, [b"0"], invocation="async", kind="unary", key="x" * 200))
        except Exception as exc:
            assert "idempotency_key" in str(exc)
        else:
            raise AssertionError("an over-long key was accepted")


async def test_a_spawn_map_whose_client_gave_up_is_closed_with_what_arrived(platform):
    from skylift.server.execution.sweeper import OPEN_CALL_IDLE

    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        started = await client.call("call.start", _start(ids, [b"0", b"1"], invocation="async", more=True))
        container = await h.started_container(worker)
        inputs = await _drain(container, 2)
        await container.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": api.STATUS_SUCCESS,
                                   "data": i["args"]} for i in inputs])
        info = await client.call("call.info", {"call_id": started["call_id"]})
        assert info["state"] in ("pending", "running")  # open: more batches may come
        h.advance(OPEN_CALL_IDLE + 1)  # they don't
        for _ in range(100):
            info = await client.call("call.info", {"call_id": started["call_id"]})
            if info["state"] == api.STATUS_SUCCESS:
                break
            await asyncio.sleep(0.05)
        assert info["state"] == api.STATUS_SUCCESS and info["num_inputs"] == 2


class _LyingStore:
    """Commits the named writes, then reports that they failed (a lost acknowledgement), once each."""

    def __init__(self, inner: Any, lie_about: set[str]) -> None:
        self.inner = inner
        self.lie_about = lie_about

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in self.lie_about:
            return method

        def lying(*args: Any) -> Any:
            self.lie_about.discard(name)
            method(*args)
            raise OSError(f"{name} committed, then reported failure")

        return lying


async def test_writes_that_commit_but_report_failure_are_neither_lost_nor_doubled(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        real = h.cp.db.store
        h.cp.db.store = _LyingStore(real, {"insert_call", "add_inputs", "close_call"})  # type: ignore[assignment]
        started = await client.call("call.start", _start(ids, [b"0"], invocation="async", more=True))
        call_id = started["call_id"]
        put = await client.call("call.put_inputs", {"call_id": call_id, "inputs": [{"args": b"1"}], "start_index": 1})
        again = await client.call("call.put_inputs", {"call_id": call_id, "inputs": [{"args": b"1"}],
                                                      "start_index": 1})
        assert again == put
        await client.call("call.close_inputs", {"call_id": call_id, "total": 2})
        assert not h.cp.db.store.lie_about  # type: ignore[attr-defined]
        h.cp.db.store = real
        container = await h.started_container(worker)
        inputs = await _drain(container, 2)
        assert sorted(i["args"] for i in inputs) == [b"0", b"1"]
        rec = real.get_call(call_id)
        assert rec is not None and rec.closed and rec.num_inputs == 2
        assert real.input_ids(call_id, 0, 10) == started["input_ids"] + put["input_ids"]


class _FailingStore:
    """Fails the named writes before touching the database, once each."""

    def __init__(self, inner: Any, fail: set[str]) -> None:
        self.inner = inner
        self.fail = fail

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in self.fail:
            return method

        def failing(*args: Any) -> Any:
            self.fail.discard(name)
            raise sqlite3.OperationalError(f"{name}: disk I/O error")

        return failing


async def test_a_failed_write_answers_unavailable_and_the_same_request_then_succeeds(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        real = h.cp.db.store
        h.cp.db.store = _FailingStore(real, {"insert_call", "add_inputs", "close_call"})  # type: ignore[assignment]
        params = _start(ids, [b"0"], invocation="async", more=True)
        with pytest.raises(RpcError) as failed:
            await client.call("call.start", params)
        assert failed.value.code == ErrorCode.UNAVAILABLE and "send it again" in failed.value.message
        started = await client.call("call.start", params)
        call_id = started["call_id"]
        put = {"call_id": call_id, "inputs": [{"args": b"1"}], "start_index": 1}
        with pytest.raises(RpcError) as failed:
            await client.call("call.put_inputs", put)
        assert failed.value.code == ErrorCode.UNAVAILABLE
        await client.call("call.put_inputs", put)
        with pytest.raises(RpcError) as failed:
            await client.call("call.close_inputs", {"call_id": call_id, "total": 2})
        assert failed.value.code == ErrorCode.UNAVAILABLE
        await client.call("call.close_inputs", {"call_id": call_id, "total": 2})
        h.cp.db.store = real
        container = await h.started_container(worker)
        assert sorted(i["args"] for i in await _drain(container, 2)) == [b"0", b"1"]
        rec = real.get_call(call_id)
        assert rec is not None and rec.closed and rec.num_inputs == 2
        assert len(real.input_ids(call_id, 0, 10)) == 2
        assert len(real.unfinished_calls()) == 1  # the failed start left nothing behind
