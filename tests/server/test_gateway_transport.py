"""How a request travels through the gateway (docs/web.md, "How a request travels"), with a fake
container speaking the protocol: a request without a body is an input at once, many requests on
one keep-alive connection and many connections answered by one container in batched
`container.web_send` calls, each response on its own connection, and the lazy deadlines of a
keep-alive connection (busy for longer than the header timeout: never cut; idle: closed).
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest

from conftest import deployed_web_app
from skylift._protocol import web_request
from skylift._protocol.rpc import RpcError


def _address(url: str) -> tuple[str, int, str]:
    host, rest = url.split("//", 1)[1].split("/", 1)
    name, port = host.rsplit(":", 1)
    return name, int(port), "/" + rest


def _request(inp: dict[str, Any]) -> dict[str, Any]:
    """The input's request as a dict: {scope, body, more_body}."""
    (request,), _ = pickle.loads(inp["args"])
    scope, body, more = web_request.unpack(request)
    return {"scope": scope, "body": body, "more_body": more}


async def _answer(container: Any, inputs: list[dict[str, Any]]) -> None:
    """One batched web_send for all of them (as the runtime's FinalSender does), then the outputs."""
    items = []
    for inp in inputs:
        request = _request(inp)
        body = request["scope"]["path"].encode() + b"|" + request["body"]
        items.append({"input_id": inp["input_id"], "messages": [
            {"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"text/plain"]]},
            {"type": "http.response.body", "body": body, "more_body": False}]})
    reply = await container.rpc.call("container.web_send", {"items": items})
    assert reply == {"closed": []}
    await container.put_many([{"input_id": inp["input_id"], "attempt": inp["attempt"], "status": "success"}
                              for inp in inputs])


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, await asyncio.wait_for(reader.readexactly(length), 30)


async def test_requests_without_a_body_are_inputs_at_once_and_bodies_still_stream(platform: Any) -> None:
    async with platform() as h:
        url = await deployed_web_app(await h.client(), "bodies")
        worker = await h.worker()
        host, port, path = _address(url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path}/a HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        request = _request(inp)
        assert (request["body"], request["more_body"]) == (b"", False)  # a GET: no body to wait for
        assert request["scope"]["client"][0] == "127.0.0.1"
        await _answer(container, [inp])
        assert (await _read_response(reader))[1] == f"{path}/a|".encode()

        writer.write(f"POST {path}/b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        [inp] = await container.next_inputs()
        assert (_request(inp)["body"], _request(inp)["more_body"]) == (b"", False)
        await _answer(container, [inp])
        await _read_response(reader)

        writer.write(f"POST {path}/c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode())
        [inp] = await container.next_inputs()
        assert (_request(inp)["body"], _request(inp)["more_body"]) == (b"hello", False)  # small: inline
        await _answer(container, [inp])
        assert (await _read_response(reader))[1] == f"{path}/c|hello".encode()

        # A chunked body has no known end: its input starts at once and the body streams.
        writer.write(f"POST {path}/d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".encode())
        [inp] = await container.next_inputs()
        assert _request(inp)["more_body"] is True
        writer.write(b"0\r\n\r\n")
        got = await container.rpc.call("container.web_receive", {"input_id": inp["input_id"], "timeout": 10})
        while not any(m.get("more_body") is False for m in got["messages"]):
            got["messages"] += (await container.rpc.call("container.web_receive",
                                                         {"input_id": inp["input_id"], "timeout": 10}))["messages"]
        assert b"".join(m["body"] for m in got["messages"]) == b"hello"
        await _answer(container, [inp])
        await _read_response(reader)
        writer.close()
        assert not h.cp.gateway.exchanges


async def test_many_connections_share_one_container_and_each_gets_its_own_answer(platform: Any) -> None:
    async with platform() as h:
        url = await deployed_web_app(await h.client(), "many")
        worker = await h.worker()
        host, port, path = _address(url)
        conns = [await asyncio.open_connection(host, port) for _ in range(16)]
        rounds = 3
        container = None
        for round_ in range(rounds):
            for n, (_, writer) in enumerate(conns):
                # Keep-alive, and two requests pipelined on each connection.
                writer.write(f"GET {path}/{round_}/{n}/x HTTP/1.1\r\nHost: x\r\n\r\n"
                             f"POST {path}/{round_}/{n}/y HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".encode())
            if container is None:
                container = await h.started_container(worker)
            answered = 0
            while answered < 2 * len(conns):
                inputs = await container.next_inputs(max=100)
                await _answer(container, inputs)  # many requests' responses in one web_send
                answered += len(inputs)
            for n, (reader, _) in enumerate(conns):
                head, body = await _read_response(reader)
                assert head.startswith(b"HTTP/1.1 200") and body == f"{path}/{round_}/{n}/x|".encode()
                head, body = await _read_response(reader)
                assert body == f"{path}/{round_}/{n}/y|hi".encode()
        for _, writer in conns:
            writer.close()
        assert not h.cp.gateway.exchanges


async def test_a_busy_keep_alive_connection_outlives_the_header_timeout_and_idle_ones_close(platform: Any) -> None:
    async with platform() as h:
        gateway = h.cp.gateway
        gateway.config.header_timeout = 0.2
        gateway.config.keepalive_timeout = 0.8
        host, port, _ = _address(gateway.url + "/x")
        reader, writer = await asyncio.open_connection(host, port)
        loop = asyncio.get_running_loop()
        began = loop.time()
        while True:  # requests 0.1 s apart for several header timeouts
            writer.write(b"GET /main-nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _ = await _read_response(reader)
            assert head.startswith(b"HTTP/1.1 404") and b"connection: close" not in head
            idle = loop.time()
            if idle - began > 1.2:
                break
            await asyncio.sleep(0.1)
        assert await asyncio.wait_for(reader.read(), 30) == b""  # then idle: closed after the keep-alive timeout
        assert loop.time() - idle >= 0.6  # (not the header timeout's 0.2 s)
        writer.close()
        assert not gateway.connections


async def test_a_malformed_response_in_a_batch_fails_its_own_request_only(platform: Any) -> None:
    async with platform() as h:
        url = await deployed_web_app(await h.client(), "malformed")
        worker = await h.worker()
        host, port, path = _address(url)
        first = await asyncio.open_connection(host, port)
        first[1].write(f"GET {path}/bad HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        container = await h.started_container(worker)
        inputs = await container.next_inputs()
        second = await asyncio.open_connection(host, port)
        second[1].write(f"GET {path}/good HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        inputs += await container.next_inputs()
        bad, good = sorted(inputs, key=lambda inp: _request(inp)["scope"]["path"])
        reply = await container.rpc.call("container.web_send", {"items": [
            {"input_id": bad["input_id"], "messages": [  # str headers: not ASGI
                {"type": "http.response.start", "status": 200, "headers": [["x-text", "not bytes"]]},
                {"type": "http.response.body", "body": b"never", "more_body": False}]},
            {"input_id": good["input_id"], "messages": [
                {"type": "http.response.start", "status": 200, "headers": []},
                {"type": "http.response.body", "body": b"fine", "more_body": False}]}]})
        assert reply == {"closed": [bad["input_id"]]}
        head, body = await _read_response(first[0])
        assert head.startswith(b"HTTP/1.1 500") and b"never" not in body
        head, body = await _read_response(second[0])
        assert head.startswith(b"HTTP/1.1 200") and body == b"fine"
        await container.put_many([{"input_id": inp["input_id"], "attempt": inp["attempt"], "status": "success"}
                                  for inp in inputs])
        for _, writer in (first, second):
            writer.close()


async def test_whole_responses_in_the_short_form_of_a_batch(platform: Any) -> None:
    """`{input_id, r: [status, headers, body]}` (what the runtime sends for a response that ends in
    one go) answers like start + body; a malformed one fails its own request only."""
    async with platform() as h:
        url = await deployed_web_app(await h.client(), "short")
        worker = await h.worker()
        host, port, path = _address(url)
        clients = []
        for name in ("a-bad", "b-good", "c-head"):
            clients.append(await asyncio.open_connection(host, port))
            method = "HEAD" if name == "c-head" else "GET"
            clients[-1][1].write(f"{method} {path}/{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        container = await h.started_container(worker)
        inputs: list[dict[str, Any]] = []
        while len(inputs) < 3:
            inputs += await container.next_inputs()
        bad, good, head = sorted(inputs, key=lambda inp: _request(inp)["scope"]["path"])
        reply = await container.rpc.call("container.web_send", {"items": [
            {"input_id": bad["input_id"], "r": [200, [["x-text", "not bytes"]], b"never"]},
            {"input_id": good["input_id"], "r": [201, [[b"x-app", b"yes"]], b"fine"]},
            {"input_id": head["input_id"], "r": [200, [], b"no body for HEAD"]}]})
        assert reply == {"closed": [bad["input_id"]]}
        answer, body = await _read_response(clients[0][0])
        assert answer.startswith(b"HTTP/1.1 500") and b"never" not in body
        answer, body = await _read_response(clients[1][0])
        assert answer.startswith(b"HTTP/1.1 201") and b"x-app: yes" in answer and body == b"fine"
        answer = await asyncio.wait_for(clients[2][0].readuntil(b"\r\n\r\n"), 30)
        assert answer.startswith(b"HTTP/1.1 200") and b"content-length: 16" in answer  # no body: a HEAD
        with pytest.raises(RpcError, match="needs 'input_id'"):
            await container.rpc.call("container.web_send", {"items": [{"input_id": bad["input_id"], "r": [200]}]})
        await container.put_many([{"input_id": inp["input_id"], "attempt": inp["attempt"], "status": "success"}
                                  for inp in inputs])
        for _, writer in clients:
            writer.close()
