"""Multiplexed request/response over one persistent connection.

Every skylift process (SDK client, container runtime, worker agent) talks to the control plane
through one `RpcClient` connection; many requests are in flight at once, matched by id. This
avoids per-call HTTP-client overhead on the hot path (design §6).

Messages (see `framing`):

    request   {"i": id, "m": method, "p": params}
    response  {"i": id, "r": result}
    error     {"i": id, "e": {"code": code, "message": text}}

The first request on a connection must be `hello` (see `api.HELLO`), which authenticates the peer
and fixes its role (the server half, `RpcServer`, is in `rpc_server.py`). Long waits (outputs,
inputs, logs) are long-polls: the request simply stays open until there is something to answer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from . import framing

log = logging.getLogger("skylift.rpc")


class ErrorCode:
    """Wire error codes; the SDK maps each to one `skylift.exception` class at one boundary."""

    INVALID = "invalid"
    NOT_FOUND = "not_found"
    AUTH = "auth"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    CANCELLED = "cancelled"
    INTERNAL = "internal"


class RpcError(Exception):
    """An error answered by the peer (or raised by a handler, to be answered)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"RpcError({self.code!r}, {self.message!r})"


class ConnectionLost(Exception):
    """The connection to the peer closed while requests were outstanding."""


@dataclass(frozen=True)
class Address:
    """Where a control plane listens: `tcp://host:port` or `unix:///path/to/socket`."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> Address:
        parsed = urlparse(url)
        if parsed.scheme == "unix":
            if not parsed.path:
                raise ValueError(f"server URL {url!r} names no socket path; use unix:///path/to/socket")
            return cls("unix", path=parsed.path)
        if parsed.scheme in ("tcp", "skylift"):
            if not parsed.hostname or not parsed.port:
                raise ValueError(f"server URL {url!r} needs a host and a port, e.g. tcp://127.0.0.1:7410")
            return cls("tcp", host=parsed.hostname, port=parsed.port)
        raise ValueError(f"server URL {url!r} has an unknown scheme; use tcp://host:port or unix:///path")

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        return f"tcp://{self.host}:{self.port}"


async def open_stream(address: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    limit = framing.MAX_FRAME_BYTES + 1024
    if address.scheme == "unix":
        return await asyncio.open_unix_connection(address.path, limit=limit)
    reader, writer = await asyncio.open_connection(address.host, address.port, limit=limit)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


class RpcClient:
    """One connection, many concurrent requests. Create with `await RpcClient.connect(...)`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._closed: BaseException | None = None
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop())
        self.hello: dict[str, Any] = {}

    @classmethod
    async def connect(cls, address: Address | str, hello: dict[str, Any]) -> RpcClient:
        """Connect and authenticate; `hello` holds token, role and version (see `api.HELLO`)."""
        if isinstance(address, str):
            address = Address.parse(address)
        reader, writer = await open_stream(address)
        client = cls(reader, writer)
        try:
            client.hello = await client.call("hello", hello)
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if self._closed is not None:
            raise ConnectionLost(f"connection closed: {self._closed}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(framing.encode({"i": request_id, "m": method, "p": params or {}}))
            if self._writer.transport.get_write_buffer_size() > 1 << 20:
                await self._writer.drain()
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def _read_loop(self) -> None:
        reason: BaseException = ConnectionLost("server closed the connection")
        try:
            while True:
                message = await framing.read_frame(self._reader)
                if message is None:
                    break
                future = self._pending.get(message.get("i", -1))
                if future is None or future.done():
                    continue
                if "e" in message:
                    err = message["e"]
                    future.set_exception(RpcError(err.get("code", ErrorCode.INTERNAL), err.get("message", "")))
                else:
                    future.set_result(message.get("r"))
        except (OSError, framing.FrameError) as exc:
            reason = ConnectionLost(str(exc))
        except asyncio.CancelledError:
            reason = ConnectionLost("connection closed by this side")
        finally:
            self._closed = reason
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionLost(str(reason)))
            self._writer.close()

    async def close(self) -> None:
        self._read_task.cancel()
        try:
            await self._read_task
        except (asyncio.CancelledError, Exception):
            pass
        try:
            await self._writer.wait_closed()
        except Exception:
            pass


# --------------------------------------------------------------------------------------------
# Blocking client


_RECV_BYTES = 64 * 1024  # a typical answer arrives in one recv, header and body together
_RECV_MAX = 1 << 20  # a big one in 1 MiB reads


class BlockingRpcClient:
    """One request at a time over a plain blocking socket: the `.remote()` fast path for sync
    callers. It skips the hop to and from an event-loop thread (~100 µs a call), which is most
    of the client's share of a warm call. Not thread-safe: keep one per thread."""

    def __init__(self, address: Address | str, hello: dict[str, Any], timeout: float | None = None) -> None:
        if isinstance(address, str):
            address = Address.parse(address)
        if address.scheme == "unix":
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = address.path
        else:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = (address.host, address.port)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(target)
        except OSError:
            self._sock.close()
            raise
        self._ids = itertools.count(1)
        self._buffer = bytearray()  # bytes read past the last frame
        self.closed = False
        self.hello = self.call("hello", hello)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if self.closed:
            raise ConnectionLost("connection closed")
        request_id = next(self._ids)
        try:
            self._sock.sendall(framing.encode({"i": request_id, "m": method, "p": params or {}}))
            while True:
                message = self._read()
                if message.get("i") == request_id:
                    break
        except (OSError, framing.FrameError) as exc:
            self.close()
            raise ConnectionLost(str(exc)) from None
        if "e" in message:
            err = message["e"]
            raise RpcError(err.get("code", ErrorCode.INTERNAL), err.get("message", ""))
        return message.get("r")

    def _fill(self, n: int) -> None:
        """Read until the buffer holds at least `n` bytes: one recv for a small answer, header and all."""
        buffer = self._buffer
        while len(buffer) < n:
            chunk = self._sock.recv(min(max(n - len(buffer), _RECV_BYTES), _RECV_MAX))
            if not chunk:
                raise ConnectionLost("server closed the connection")
            buffer += chunk

    def _read(self) -> dict[str, Any]:
        header = framing._HEADER.size
        self._fill(header)
        (length,) = framing._HEADER.unpack_from(self._buffer)
        if length > framing.MAX_FRAME_BYTES:
            raise framing.FrameError(f"peer announced a {length}-byte frame")
        self._fill(header + length)
        body = bytes(self._buffer[header:header + length])
        del self._buffer[:header + length]
        return framing.decode(body)

    def close(self) -> None:
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass
