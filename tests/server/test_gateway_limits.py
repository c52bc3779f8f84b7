"""The gateway's limits before anything checks who the client is (issue 9, finding 3; docs/web.md, "Limits").

Raw sockets against a real control plane: a huge header field or URL is refused with 431 / 414 as
soon as it crosses the limit (and never becomes an input), a head that trickles in is answered 408
and closed, an idle keep-alive connection is closed, the connection cap answers 503 with one log
line, and neither stalled huge heads nor a client that never reads its answers hold memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import Any

import pytest

from conftest import deployed_web_app
from skylift.server.http.gateway import GatewayConfig
from skylift.server.http.http_limits import HeadBudget, HeadRejected

MiB = 1024 * 1024




def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


def rss() -> int:
    """This process's resident memory (the control plane runs in it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def send_until_refused(writer: asyncio.StreamWriter, head: bytes, filler: int, total: int,
                             tail: bytes = b"") -> int:
    """Write `head`, up to `total` filler bytes in 1 MiB writes and `tail`, until the server stops taking them."""
    sent = 0
    piece = bytes([filler]) * MiB
    with contextlib.suppress(ConnectionError):
        writer.write(head)
        while sent < total:
            writer.write(piece)
            await asyncio.wait_for(writer.drain(), 10)
            sent += len(piece)
        writer.write(tail)
        await asyncio.wait_for(writer.drain(), 10)
    return sent


async def shut(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and the rest of what the server sent before it closed the connection."""
    data = b""
    with contextlib.suppress(ConnectionError):
        data = await asyncio.wait_for(reader.read(1 << 20), 30)
        while True:
            more = await asyncio.wait_for(reader.read(1 << 20), 30)
            if not more:
                break
            data += more
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


def test_head_budget_counts_exactly_and_by_reads() -> None:
    budget = HeadBudget(max_url=100, max_head=1000, max_headers=3)
    budget.add_url(60)
    budget.add_url(40)  # exactly the limit is allowed
    with pytest.raises(HeadRejected) as refused:
        budget.add_url(1)
    assert refused.value.status == 414
    budget.reset()
    for n in range(3):
        budget.add_header(b"x-%d" % n, b"v")
    with pytest.raises(HeadRejected, match="more than 3 header fields") as refused:
        budget.add_header(b"x-3", b"v")
    assert refused.value.status == 431
    budget.reset()
    budget.add_header(b"x", b"v" * 900)  # complete fields, counted exactly (with the request line's allowance)
    with pytest.raises(HeadRejected, match="larger than the limit of 1000 bytes"):
        budget.add_header(b"y", b"v" * 100)
    budget.reset()
    budget.add_read(600)  # a field that never ends is seen only as reads
    with pytest.raises(HeadRejected) as refused:
        budget.add_read(600)
    assert refused.value.status == 431


def test_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    default = GatewayConfig()
    assert (default.max_url, default.max_head, default.max_headers, default.header_timeout,
            default.keepalive_timeout, default.max_connections) == (8192, 65536, 100, 10.0, 60.0, 1024)
    for name, value in [("SKYLIFT_WEB_MAX_URL", "4096"), ("SKYLIFT_WEB_MAX_HEAD", "32768"),
                        ("SKYLIFT_WEB_MAX_HEADERS", "50"), ("SKYLIFT_WEB_HEADER_TIMEOUT", "2.5"),
                        ("SKYLIFT_WEB_KEEPALIVE_TIMEOUT", "5"), ("SKYLIFT_WEB_MAX_CONNECTIONS", "10")]:
        monkeypatch.setenv(name, value)
    config = GatewayConfig.from_env()
    assert (config.max_url, config.max_head, config.max_headers, config.header_timeout,
            config.keepalive_timeout, config.max_connections) == (4096, 32768, 50, 2.5, 5.0, 10)
    monkeypatch.setenv("SKYLIFT_WEB_HEADER_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="SKYLIFT_WEB_HEADER_TIMEOUT='soon' is not a number"):
        GatewayConfig.from_env()
    monkeypatch.setenv("SKYLIFT_WEB_HEADER_TIMEOUT", "0")
    with pytest.raises(ValueError, match="must be positive"):
        GatewayConfig.from_env()


async def test_a_16_mib_header_is_refused_with_431_and_never_forwarded(platform: Any) -> None:
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        url = await deployed_web_app(client, "big-header")
        host, port = _address(url)
        reader, writer = await asyncio.open_connection(host, port)
        head = f"GET /{url.rsplit('/', 1)[1]}/ HTTP/1.1\r\nHost: x\r\nX-Big: ".encode()
        await send_until_refused(writer, head, ord("a"), 16 * MiB, b"\r\n\r\n")
        status, answer = await read_answer(reader)
        await shut(writer)
        assert status == 431, answer[:300]
        assert b"SKYLIFT_WEB_MAX_HEAD" in answer
        # Refused when the limit is crossed: a client that stalls after 1 MiB gets its answer too.
        reader, writer = await asyncio.open_connection(host, port)
        await send_until_refused(writer, head, ord("a"), MiB)
        status, answer = await read_answer(reader)
        await shut(writer)
        assert status == 431, answer[:300]
        await worker.no_command("start_task", within=0.5)  # no input, so no container
        assert h.cp.gateway.rejected == {431: 2} and not h.cp.gateway.exchanges

        # A head within the limits (60 fields of 800 bytes, 48 KiB) still goes through.
        reader, writer = await asyncio.open_connection(host, port)
        fields = b"".join(b"X-F%d: %b\r\n" % (n, b"v" * 800) for n in range(60))
        writer.write(f"GET /{url.rsplit('/', 1)[1]}/ok HTTP/1.1\r\nHost: x\r\n".encode() + fields + b"\r\n")
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await container.rpc.call("container.web_send", {"input_id": inp["input_id"], "messages": [
            {"type": "http.response.start", "status": 200, "headers": []},
            {"type": "http.response.body", "body": b"fine", "more_body": False}]})
        await container.put(inp)
        assert (await asyncio.wait_for(reader.readuntil(b"fine"), 30)).startswith(b"HTTP/1.1 200")
        await shut(writer)


async def test_too_many_header_fields_is_431(platform: Any) -> None:
    async with platform() as h:
        host, port = _address(h.cp.gateway.url + "/")
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(200)) + b"\r\n")
        status, answer = await read_answer(reader)
        await shut(writer)
        assert status == 431 and b"more than 100 header fields" in answer, answer


async def test_a_48_mib_url_is_refused_with_414_at_once(platform: Any) -> None:
    async with platform() as h:
        host, port = _address(h.cp.gateway.url + "/")
        reader, writer = await asyncio.open_connection(host, port)
        started = time.monotonic()
        await send_until_refused(writer, b"GET /", ord("u"), 48 * MiB, b" HTTP/1.1\r\n\r\n")
        status, answer = await read_answer(reader)
        await shut(writer)
        print(f"48 MiB URL: {status} after {time.monotonic() - started:.3f} s")
        assert status == 414 and b"SKYLIFT_WEB_MAX_URL" in answer, answer[:300]
        reader, writer = await asyncio.open_connection(host, port)
        await send_until_refused(writer, b"GET /", ord("u"), MiB)  # and stalls
        assert (await read_answer(reader))[0] == 414
        await shut(writer)


async def test_slowloris_connections_are_answered_408_and_closed(platform: Any) -> None:
    async with platform() as h:
        gateway = h.cp.gateway
        gateway.config.header_timeout = 0.5
        host, port = _address(gateway.url + "/")
        count = 200

        async def slowloris() -> tuple[int, bytes]:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
                first = b""
                for n in range(40):  # a field every 0.2 s, never the end of the head, until answered
                    writer.write(b"X-%d: y\r\n" % n)
                    with contextlib.suppress(asyncio.TimeoutError):
                        first = await asyncio.wait_for(reader.read(1 << 16), 0.2)
                        break
                _, rest = await read_answer(reader)
                data = first + rest
                return (int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0), data
            finally:
                await shut(writer)

        async def silent() -> bytes:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                return await asyncio.wait_for(reader.read(), 30)  # b"": closed without an answer
            finally:
                await shut(writer)

        answers = await asyncio.gather(*(slowloris() for _ in range(count)), silent())
        statuses = [status for status, _ in answers[:count]]
        assert statuses == [408] * count, sorted(set(statuses))
        assert b"SKYLIFT_WEB_HEADER_TIMEOUT" in answers[0][1]
        assert answers[-1] == b""
        assert gateway.timed_out == count
        for _ in range(100):
            if not gateway.connections:
                break
            await asyncio.sleep(0.05)
        assert not gateway.connections


async def test_an_idle_keep_alive_connection_is_closed(platform: Any) -> None:
    async with platform() as h:
        gateway = h.cp.gateway
        gateway.config.keepalive_timeout = 0.5
        host, port = _address(gateway.url + "/")
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(2):  # keep-alive: two answers on one connection
            writer.write(b"GET /main-nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 404") and b"connection: close" not in head
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        assert await asyncio.wait_for(reader.read(), 30) == b""  # then idle: closed
        await shut(writer)
        assert not gateway.connections


async def test_a_small_body_that_stops_coming_is_answered_408(platform: Any) -> None:
    async with platform() as h:
        gateway = h.cp.gateway
        gateway.config.keepalive_timeout = 0.5
        url = await deployed_web_app(await h.client(), "slow-body")
        host, port = _address(url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"POST /{url.rsplit('/', 1)[1]}/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc".encode())
        status, answer = await read_answer(reader)
        await shut(writer)
        assert status == 408 and b"request body did not arrive" in answer, answer
        assert not gateway.exchanges


async def test_the_connection_cap_answers_503_and_logs_once(platform: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with platform() as h:
        gateway = h.cp.gateway
        gateway.config.max_connections = 5
        host, port = _address(gateway.url + "/")
        held = [await asyncio.open_connection(host, port) for _ in range(5)]
        for _ in range(100):
            if len(gateway.connections) == 5:
                break
            await asyncio.sleep(0.02)
        with caplog.at_level(logging.INFO, logger="skylift.server"):
            for _ in range(3):
                reader, writer = await asyncio.open_connection(host, port)
                status, answer = await read_answer(reader)
                await shut(writer)
                assert status == 503 and b"too many open connections" in answer, answer
            assert [r.getMessage() for r in caplog.records if "limit" in r.getMessage()] == [
                "web gateway: 5 connections are open, the limit (SKYLIFT_WEB_MAX_CONNECTIONS=5); "
                "new ones get 503 until some close"]
            for _, writer in held:
                await shut(writer)
            for _ in range(100):
                if not gateway.connections:
                    break
                await asyncio.sleep(0.02)
        assert gateway.refused == 0 and "accepting connections again (3 were refused" in caplog.text
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /main-nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await read_answer(reader))[0] == 404
        await shut(writer)


async def test_stalled_huge_heads_leave_no_memory_behind(platform: Any) -> None:
    async with platform() as h:
        gateway = h.cp.gateway
        host, port = _address(gateway.url + "/")
        gc.collect()
        before = rss()
        connections = [await asyncio.open_connection(host, port) for _ in range(3)]
        # Each sends 64 MiB of one header field and then stalls (never ends the head).
        sent = await asyncio.gather(*(send_until_refused(w, b"GET / HTTP/1.1\r\nX-Big: ", ord("b"), 64 * MiB)
                                      for _, w in connections))
        stalled = rss()
        answers = [await read_answer(r) for r, _ in connections]
        for _, writer in connections:
            await shut(writer)
        for _ in range(100):
            if not gateway.connections:
                break
            await asyncio.sleep(0.05)
        gc.collect()
        after = rss()
        print(f"3 stalled 64 MiB heads: RSS {before / MiB:.0f} MiB before, {stalled / MiB:.0f} while stalled, "
              f"{after / MiB:.0f} after; {sum(sent) / MiB:.0f} MiB taken; {[s for s, _ in answers]}")
        assert [s for s, _ in answers] == [431] * 3
        assert not gateway.connections
        assert stalled - before < 48 * MiB and after - before < 48 * MiB


async def test_a_client_that_never_reads_its_answers_holds_bounded_memory(platform: Any) -> None:
    async with platform() as h:
        gateway = h.cp.gateway
        host, port = _address(gateway.url + "/")
        reader, writer = await asyncio.open_connection(host, port, limit=1024)
        # A shrunken receive buffer on our side so the server's own buffers show what it holds.
        request = b"GET /main-nothing HTTP/1.1\r\nHost: x\r\n\r\n"
        pipelined = request * (8 * MiB // len(request))  # ~200k requests, ~40 MiB of 404 answers

        async def send() -> None:
            with contextlib.suppress(ConnectionError):
                writer.write(pipelined)
                await writer.drain()

        sender = asyncio.get_running_loop().create_task(send())
        reader._transport.pause_reading()  # type: ignore[attr-defined]  # never read the answers
        await asyncio.sleep(3)
        [conn] = gateway.connections
        assert conn.transport is not None
        held = conn.transport.get_write_buffer_size()
        print(f"answers waiting in the gateway for a client that doesn't read: {held / MiB:.1f} MiB")
        assert held < 4 * MiB
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.transport.abort()  # its unsent requests would keep a graceful close waiting
        for _ in range(100):
            if not gateway.connections:
                break
            await asyncio.sleep(0.02)
        assert not gateway.connections
