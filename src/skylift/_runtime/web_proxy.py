"""`@modal.web_server(port)`: forward each request to the HTTP server the user's function started.

A minimal HTTP/1.1 client on asyncio streams (no third-party package needs to be in the image):
keep-alive connections to 127.0.0.1:PORT are pooled, the request body is forwarded with its
Content-Length or chunked when it streams, and the response streams back by Content-Length,
chunks, or until the server closes. WebSockets are not forwarded (they work with `asgi_app`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..exception import InvalidError

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
                        b"upgrade", b"content-length"})
CHUNK = 64 * 1024


async def wait_for_port(port: int, timeout: float) -> None:
    """Wait until something accepts connections on `port` (Modal: up to `startup_timeout`)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
        except (OSError, asyncio.TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise InvalidError(f"@modal.web_server: nothing listens on port {port} after {timeout:g}s (startup_timeout); "
                       f"the server must listen on 0.0.0.0 or 127.0.0.1 ({last!r})")


class ProxyApp:
    def __init__(self, port: int) -> None:
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
        return await asyncio.open_connection("127.0.0.1", self.port, limit=CHUNK * 4)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1011, "reason": "web_server doesn't forward WebSockets"})
            return
        first = await receive()
        body = first.get("body") or b""
        streaming = bool(first.get("more_body"))
        reader, writer = await self._connect()
        target = scope.get("raw_path") or scope["path"].encode()
        root = (scope.get("root_path") or "").encode()
        if root and target.startswith(root):
            target = target[len(root):] or b"/"
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        head = [b"%s %s HTTP/1.1\r\n" % (scope["method"].encode(), target)]
        head.extend(b"%s: %s\r\n" % (k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP)
        head.append(b"transfer-encoding: chunked\r\n" if streaming else b"content-length: %d\r\n" % len(body))
        writer.write(b"".join(head) + b"\r\n")
        if streaming:
            while True:
                if body:
                    writer.write(b"%x\r\n%s\r\n" % (len(body), body))
                if not streaming:
                    writer.write(b"0\r\n\r\n")
                    break
                await writer.drain()
                message = await receive()
                if message["type"] != "http.request":
                    writer.close()
                    return
                body = message.get("body") or b""
                streaming = bool(message.get("more_body"))
        else:
            writer.write(body)
        await writer.drain()
        reusable = await self._relay(scope, reader, send)
        if reusable:
            self._idle.append((reader, writer))
        else:
            writer.close()

    async def _relay(self, scope: dict[str, Any], reader: asyncio.StreamReader, send: Send) -> bool:
        status_line = await reader.readline()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError(f"web_server on port {self.port} answered {status_line[:100]!r}, not HTTP")
        status = int(parts[1])
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection":
                close = b"close" in value.lower()
            if name not in HOP_BY_HOP or name == b"content-length":
                headers.append((name, value))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD" or status in (204, 304) or 100 <= status < 200:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return not close
        if chunked:
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = await reader.readexactly(size)
                await reader.readline()
                await send({"type": "http.response.body", "body": data, "more_body": True})
        elif length is not None:
            left = length
            while left > 0:
                data = await reader.read(min(left, CHUNK))
                if not data:
                    raise ConnectionError(f"web_server on port {self.port} closed mid-response")
                left -= len(data)
                await send({"type": "http.response.body", "body": data, "more_body": left > 0})
            if length == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            return not close
        else:
            close = True
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return not close
