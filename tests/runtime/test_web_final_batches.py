"""The container's batched web responses: written before the outputs that follow them, without a task.

A handler no longer waits for its response's batch (web.FinalSender), so nothing but the order of
writes keeps an input's output behind its response: these tests pin that order down, and the
eager start (`_runtime/eager.py`) the batch's call relies on.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from skylift._protocol import web_request
from skylift._runtime import eager
from skylift._runtime.web import FinalSender, OrderedCaller, WebRuntime

var: contextvars.ContextVar[str | None] = contextvars.ContextVar("var", default=None)


class Recorder:
    """A Caller that records what it writes (at call time, as the RPC client does) and answers later."""

    def __init__(self) -> None:
        self.written: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[asyncio.Future[Any]] = []

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.written.append((method, params or {}))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.answers.append(future)
        return await future

    def answer_all(self) -> None:
        for future in self.answers:
            if not future.done():
                future.set_result({"closed": []})


def test_eager_start_runs_to_the_first_wait_in_a_context_of_its_own() -> None:
    asyncio.run(_eager_start_runs_to_the_first_wait_in_a_context_of_its_own())


async def _eager_start_runs_to_the_first_wait_in_a_context_of_its_own() -> None:
    loop = asyncio.get_running_loop()
    seen: list[Any] = []

    async def quick() -> None:
        var.set("quick")
        seen.append(var.get())

    assert eager.start(loop, quick()) is None and seen == ["quick"] and var.get() is None

    gate: asyncio.Future[int] = loop.create_future()

    async def slow() -> int:
        var.set("slow")
        seen.append(await gate)
        await asyncio.sleep(0)
        seen.append(var.get())
        return 7

    task = eager.start(loop, slow())
    assert task is not None and var.get() is None
    gate.set_result(5)
    assert await task == 7 and seen[-2:] == [5, "slow"]

    blocked: asyncio.Future[None] = loop.create_future()

    async def cancelled() -> None:
        try:
            await blocked
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = eager.start(loop, cancelled())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and seen[-1] == "cancelled"


def test_a_batch_is_one_call_written_in_the_turn_its_first_response_came() -> None:
    asyncio.run(_a_batch_is_one_call_written_in_the_turn_its_first_response_came())


async def _a_batch_is_one_call_written_in_the_turn_its_first_response_came() -> None:
    rpc = Recorder()
    finals = FinalSender(rpc)
    finals.respond("in-1", 200, [[b"a", b"b"]], b"one")
    finals.send("in-2", [{"type": "http.response.body", "body": b"two", "more_body": False}])
    assert rpc.written == []  # not before the turn ends: later responses of the turn join it
    await asyncio.sleep(0)
    assert rpc.written == [("container.web_send", {"items": [
        {"input_id": "in-1", "r": [200, [[b"a", b"b"]], b"one"]},
        {"input_id": "in-2", "messages": [{"type": "http.response.body", "body": b"two", "more_body": False}]}]})]
    waiting = asyncio.get_running_loop().create_task(finals.wait())
    await asyncio.sleep(0)
    assert not waiting.done()  # a stopping container waits for the batch's answer
    rpc.answer_all()
    await waiting


def test_an_output_never_goes_out_before_the_responses_queued_ahead_of_it() -> None:
    asyncio.run(_an_output_never_goes_out_before_the_responses_queued_ahead_of_it())


async def _an_output_never_goes_out_before_the_responses_queued_ahead_of_it() -> None:
    rpc = Recorder()
    finals = FinalSender(rpc)
    ordered = OrderedCaller(rpc, finals)
    finals.respond("in-1", 200, [], b"done")
    # The input loop sends the output in the same step (a poll's answer ran the request): the
    # queued batch goes first, in that step.
    pending = asyncio.ensure_future(ordered.call("container.put_outputs", {"outputs": [{"input_id": "in-1"}]}))
    await asyncio.sleep(0)
    assert [method for method, _ in rpc.written] == ["container.web_send", "container.put_outputs"]
    rpc.answer_all()
    await pending
    await asyncio.sleep(0)
    assert len(rpc.written) == 2  # the batch's own callback found nothing left to send


def test_a_whole_response_travels_in_the_short_form_and_the_handler_does_not_wait() -> None:
    asyncio.run(_a_whole_response_travels_in_the_short_form_and_the_handler_does_not_wait())


async def _a_whole_response_travels_in_the_short_form_and_the_handler_does_not_wait() -> None:
    rpc = Recorder()
    runtime = WebRuntime(rpc)
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        assert await receive() == {"type": "http.request", "body": b"hi", "more_body": False}
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x", b"y")]})
        await send({"type": "http.response.body", "body": b"ok"})

    handle = runtime.handler(app, None)
    request = web_request.pack(websocket=False, method="POST", path="/p", raw_path=b"/p", query_string=b"q=1",
                               root_path="", headers=[(b"host", b"h")], client=("127.0.0.1", 5),
                               server=("127.0.0.1", 80), http_version="1.1", subprotocols=[], body=b"hi",
                               more_body=False)
    await handle(request)  # returns before anything is written or answered
    assert rpc.written == []
    scope = scopes[0]
    assert (scope["type"], scope["method"], scope["path"], scope["query_string"], scope["client"],
            scope["scheme"], scope["asgi"]["version"], scope["state"]) == (
        "http", "POST", "/p", b"q=1", ("127.0.0.1", 5), "http", "3.0", {})
    await asyncio.sleep(0)
    assert rpc.written[0][1]["items"][0]["r"] == [201, [[b"x", b"y"]], b"ok"]
    rpc.answer_all()
