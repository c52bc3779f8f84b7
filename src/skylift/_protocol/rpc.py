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
from collections.abc import Callable
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


Answer = Callable[[Any, BaseException | None], None]  # (result, error): one of them is set


class RpcClient(asyncio.Protocol):
    """One connection, many concurrent requests. Create with `await RpcClient.connect(...)`.

    An `asyncio.Protocol`: answers are parsed and matched to their requests in `data_received`,
    so an awaiting `call` resumes one event-loop pass after the bytes arrive (a stream-reader
    task would wake first and then wake the caller: two passes). `send` takes a callback that runs
    right there, with no pass at all (the container's outputs and next input ride on that).
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any] | Answer] = {}
        self._closed: BaseException | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self.hello: dict[str, Any] = {}

    @classmethod
    async def open(cls, address: Address | str) -> RpcClient:
        """Connect without saying `hello` (the caller sends it: `connect` does)."""
        if isinstance(address, str):
            address = Address.parse(address)
        loop = asyncio.get_running_loop()
        client: RpcClient
        if address.scheme == "unix":
            _, client = await loop.create_unix_connection(cls, address.path)
        else:
            transport, client = await loop.create_connection(cls, address.host, address.port)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client

    @classmethod
    async def connect(cls, address: Address | str, hello: dict[str, Any]) -> RpcClient:
        """Connect and authenticate; `hello` holds token, role and version (see `api.HELLO`)."""
        client = await cls.open(address)
        try:
            client.hello = await client.call("hello", hello)
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # -- requests ---------------------------------------------------------------------------------

    def _write(self, method: str, params: dict[str, Any] | None, pending: asyncio.Future[Any] | Answer) -> int:
        if self._closed is not None or self._transport is None:
            raise ConnectionLost(f"connection closed: {self._closed}")
        request_id = next(self._ids)
        data = framing.encode({"i": request_id, "m": method, "p": params or {}})
        self._pending[request_id] = pending
        self._transport.write(data)
        return request_id

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        future: asyncio.Future[Any] = self._loop.create_future()
        request_id = self._write(method, params, future)
        try:
            if not self._writable.is_set():
                await self._writable.wait()  # the peer reads slowly: don't pile up requests in memory
            return await future
        finally:
            self._pending.pop(request_id, None)

    def send(self, method: str, params: dict[str, Any] | None, answer: Answer) -> None:
        """Write a request now; `answer(result, error)` runs as soon as its answer is parsed (or
        with `ConnectionLost` when the connection goes first). Raises `ConnectionLost` if it is down."""
        self._write(method, params, answer)

    @property
    def congested(self) -> bool:
        """The peer reads slowly (over 1 MiB waits to be written): callers of `send` should hold back."""
        return not self._writable.is_set()

    # -- transport callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=1 << 20)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        header = framing._HEADER.size
        pos = 0
        try:
            while len(buffer) - pos >= header:
                (length,) = framing._HEADER.unpack_from(buffer, pos)
                if length > framing.MAX_FRAME_BYTES:
                    raise framing.FrameError(f"peer announced a {length}-byte frame; "
                                             f"the limit is {framing.MAX_FRAME_BYTES}")
                end = pos + header + length
                if len(buffer) < end:
                    break
                message = framing.decode(bytes(buffer[pos + header:end]))
                pos = end
                self._answer(message)
        except framing.FrameError as exc:
            self._fail(ConnectionLost(str(exc)))
        finally:
            if pos:
                del buffer[:pos]

    def _answer(self, message: dict[str, Any]) -> None:
        pending = self._pending.pop(message.get("i", -1), None)
        if pending is None:
            return
        error: BaseException | None = None
        if "e" in message:
            err = message["e"]
            error = RpcError(err.get("code", ErrorCode.INTERNAL), err.get("message", ""))
        if isinstance(pending, asyncio.Future):
            if pending.done():
                return
            if error is not None:
                pending.set_exception(error)
            else:
                pending.set_result(message.get("r"))
            return
        try:
            pending(message.get("r"), error)
        except Exception:  # a callback's bug must not take the connection down
            log.exception("handling the answer to an RPC failed")

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed is None:
            self._closed = ConnectionLost(str(exc) if exc is not None else "server closed the connection")
        self._writable.set()
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if isinstance(entry, asyncio.Future):
                if not entry.done():
                    entry.set_exception(ConnectionLost(str(self._closed)))
            else:
                try:
                    entry(None, ConnectionLost(str(self._closed)))
                except Exception:
                    log.exception("handling a lost RPC failed")
        if not self._lost.done():
            self._lost.set_result(None)

    def _fail(self, reason: BaseException) -> None:
        if self._closed is None:
            self._closed = reason
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        if self._closed is None:
            self._closed = ConnectionLost("connection closed by this side")
        if self._transport is not None:
            self._transport.close()
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), 5)
            except (asyncio.TimeoutError, Exception):
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

    def shutdown(self) -> None:
        """From another thread: end a call blocked on this connection (it raises ConnectionLost)."""
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass
