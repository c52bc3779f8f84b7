"""The RPC server's framing as bytes arrive: requests split anywhere, several per read, requests
sent behind a `hello` before its answer, and answers in completion order."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

from skylift._protocol import framing
from skylift._protocol.rpc import Address, ErrorCode, RpcError
from skylift._protocol.rpc_server import RpcServer, Session

HEADER = struct.Struct(">I")


async def _authenticate(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0.05)  # requests sent behind the hello wait for it
    if params.get("token") != "good":
        raise RpcError(ErrorCode.AUTH, "bad token")
    session.role = "client"
    return {"ok": True}


async def _echo(session: Session, params: dict[str, Any]) -> Any:
    await asyncio.sleep(params.get("delay", 0))
    return params["x"]


async def _server(tmp_path: Path) -> tuple[RpcServer, str]:
    server = RpcServer(_authenticate, {"echo": (_echo, frozenset({"client"}))})
    path = str(tmp_path / "rpc.sock")
    await server.listen(Address("unix", path=path))
    return server, path


def _request(i: int, method: str, params: dict[str, Any]) -> bytes:
    return framing.encode({"i": i, "m": method, "p": params})


async def _answers(reader: asyncio.StreamReader, n: int) -> list[dict[str, Any]]:
    got = []
    for _ in range(n):
        message = await asyncio.wait_for(framing.read_frame(reader), 10)
        assert message is not None
        got.append(message)
    return got


async def test_requests_behind_hello_split_and_batched(tmp_path: Path) -> None:
    server, path = await _server(tmp_path)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        data = (_request(1, "hello", {"token": "good"}) + _request(2, "echo", {"x": "a"})
                + _request(3, "echo", {"x": b"b" * 100_000}))
        for k in range(0, len(data), 7):  # dribbled out in 7-byte pieces
            writer.write(data[k:k + 7])
            if k < 200:
                await writer.drain()
        got = await _answers(reader, 3)
        assert [m["i"] for m in got] == [1, 2, 3]
        assert got[0]["r"] == {"ok": True} and got[1]["r"] == "a" and got[2]["r"] == b"b" * 100_000
        # Several requests in one write, answered as each finishes (a refusal at once).
        writer.write(_request(4, "echo", {"x": "slow", "delay": 0.3}) + _request(5, "echo", {"x": "quick"})
                     + _request(6, "nope", {}))
        got = await _answers(reader, 3)
        assert [m["i"] for m in got] == [6, 5, 4]
        assert got[0]["e"]["code"] == ErrorCode.INVALID and "unknown method" in got[0]["e"]["message"]
        assert server.n_connections == 1
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if server.n_connections == 0:
                break
            await asyncio.sleep(0.02)
        assert server.n_connections == 0
    finally:
        await server.close()


async def test_a_refused_hello_closes_and_nothing_behind_it_runs(tmp_path: Path) -> None:
    server, path = await _server(tmp_path)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(_request(1, "hello", {"token": "bad"}) + _request(2, "echo", {"x": "a"}))
        [answer] = await _answers(reader, 1)
        assert answer["i"] == 1 and answer["e"]["code"] == ErrorCode.AUTH
        assert await asyncio.wait_for(framing.read_frame(reader), 10) is None  # closed, echo never answered
        writer.close()
        await writer.wait_closed()
    finally:
        await server.close()
