"""Handlers that have their answer at once (`Ready`): answered in the step that parsed the request,
in order with the other answers of that turn (written together), and errors still answered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from skylift._protocol import framing
from skylift._protocol.rpc import Address, ErrorCode, RpcError
from skylift._protocol.rpc_server import Ready, RpcServer, Session


async def _authenticate(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    session.role = "client"
    return {"ok": True}


def _now(session: Session, params: dict[str, Any]) -> Awaitable[Any]:
    if "x" not in params:
        raise RpcError(ErrorCode.INVALID, "needs x")
    if params.get("later"):
        return _later(params["x"])
    return Ready(params["x"])


async def _later(x: Any) -> Any:
    await asyncio.sleep(0.01)
    return x


async def test_ready_answers_plain_errors_and_awaited_ones_share_a_connection(tmp_path: Path) -> None:
    server = RpcServer(_authenticate, {"now": (_now, frozenset({"client"}))})
    path = str(tmp_path / "rpc.sock")
    await server.listen(Address("unix", path=path))
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        requests = [{"i": 1, "m": "hello", "p": {}}, {"i": 2, "m": "now", "p": {"x": "a", "later": True}},
                    {"i": 3, "m": "now", "p": {"x": "b"}}, {"i": 4, "m": "now", "p": {}},
                    {"i": 5, "m": "now", "p": {"x": b"c"}}]
        writer.write(b"".join(framing.encode(r) for r in requests))
        got = []
        for _ in requests:
            message = await asyncio.wait_for(framing.read_frame(reader), 10)
            assert message is not None
            got.append(message)
        assert got[0] == {"i": 1, "r": {"ok": True}}
        # The ready answers come in request order, before the one that waited.
        assert [m["i"] for m in got[1:]] == [3, 4, 5, 2]
        assert got[1]["r"] == "b" and got[3]["r"] == b"c" and got[4]["r"] == "a"
        assert got[2]["e"]["code"] == ErrorCode.INVALID and "needs x" in got[2]["e"]["message"]
        assert await Ready(7) == 7  # still an awaitable for callers that await a handler directly
        writer.close()
    finally:
        await server.close()
