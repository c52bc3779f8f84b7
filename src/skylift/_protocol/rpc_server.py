"""The server half of the RPC protocol (`rpc.py` has the wire, the errors and the clients).

`RpcServer` accepts connections and dispatches each request to a handler by method name; each
connection is an `asyncio.Protocol` (`_Connection`) that parses frames as their bytes arrive.
The first request must be `hello`; until it succeeds a peer is held to the pre-auth limits below.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import framing
from .rpc import Address, ErrorCode, RpcError

log = logging.getLogger("skylift.rpc")

# Before `hello` succeeds a peer is unknown: it may send one small frame (a hello is a few hundred
# bytes), within a deadline, and only so many such peers may be waiting at once.
PRE_AUTH_FRAME_BYTES = 64 * 1024
HELLO_TIMEOUT = 10.0
MAX_CONNECTIONS = 4096
MAX_UNAUTHENTICATED = 256


@dataclass
class Session:
    """One authenticated connection, as the server sees it."""

    role: str = ""
    identity: str = ""  # task id for containers, worker id for workers, "" for clients
    principal: Any = None  # who this is and what it may reach (the server's access module fills it in)
    info: dict[str, Any] = field(default_factory=dict)
    peer: str = ""
    closed: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[Session, dict[str, Any]], Awaitable[Any]]


class Ready:
    """What a handler returns when it has its answer without waiting: the server sends it in the
    same step, with no task for the request (a batch of a container's web responses, many per second)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # a generator that never suspends: awaiting it gives the value


H = TypeVar("H", bound=Callable[..., Any])


def eager(handler: H) -> H:
    """Mark a hot coroutine handler to be started inside `data_received`, as Python 3.12's eager
    tasks would: its first step (parsing, queueing an input, settling outputs) runs in the same
    loop pass as the bytes that asked for it, and only its remainder, if it suspends, becomes a
    task. Only for handlers that need no `asyncio.current_task()` until their first suspension
    (no `asyncio.timeout` there, which needs it on 3.11) and set no context variables."""
    handler._rpc_eager = True  # type: ignore[attr-defined]
    return handler


Authenticate = Callable[[Session, dict[str, Any]], Awaitable[dict[str, Any]]]
# Called before every handler; raises RpcError(AUTH) to refuse the request.
Authorize = Callable[[Session, str, dict[str, Any]], None]


class RpcServer:
    """Accepts connections and dispatches requests to handlers by method name.

    `authenticate(session, hello_params)` must fill in `session.role` (or raise `RpcError(AUTH)`).
    `authorize(session, method, params)`, when given, is the one check before every handler (the
    control plane's access table); without it, `handlers[method] = (handler, roles)` lists which
    roles may call each method.

    Until `hello` succeeds a connection may send one frame of at most `PRE_AUTH_FRAME_BYTES`
    (checked from its header, before anything is read), within `hello_timeout` seconds; at most
    `max_unauthenticated` connections may be in that state and `max_connections` open in all.
    Connections beyond either cap are closed at once, with one log line each time a cap is hit.

    Each connection is an `asyncio.Protocol` (`_Connection`): frames are parsed as their bytes
    arrive and each request's handler task is created in the same step, without a stream-reader
    task in between (one event-loop pass less per request, which is most of a request's cost to
    the control plane besides the handler itself).
    """

    def __init__(
        self,
        authenticate: Authenticate,
        handlers: dict[str, tuple[Handler, frozenset[str]]],
        on_disconnect: Callable[[Session], Awaitable[None]] | None = None,
        *,
        authorize: Authorize | None = None,
        hello_timeout: float = HELLO_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_unauthenticated: int = MAX_UNAUTHENTICATED,
    ) -> None:
        self._authenticate = authenticate
        self._authorize = authorize
        self._handlers = handlers
        self._on_disconnect = on_disconnect
        self._hello_timeout = hello_timeout
        self._max_connections = max_connections
        self._max_unauthenticated = max_unauthenticated
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[_Connection] = set()
        self._disconnects: set[asyncio.Task[None]] = set()
        self._unauthenticated = 0
        self._at_cap = False  # logged once per episode of refusals, not once per refused peer
        self.refused = 0  # connections closed because a cap was reached

    @property
    def n_connections(self) -> int:
        return len(self._connections)

    def _admit(self) -> bool:
        """Whether a new connection fits under the caps (logging when one is first hit)."""
        if len(self._connections) >= self._max_connections:
            reason = (f"{len(self._connections)} connections are open (the limit is {self._max_connections}; "
                      "raise Settings.rpc_max_connections if this load is expected)")
        elif self._unauthenticated >= self._max_unauthenticated:
            reason = (f"{self._unauthenticated} connections have not sent hello yet (the limit is "
                      f"{self._max_unauthenticated}; each gets {self._hello_timeout:g} s)")
        else:
            if self._at_cap:
                log.warning("RPC connections are accepted again (%d refused meanwhile)", self.refused)
            self._at_cap = False
            return True
        self.refused += 1
        if not self._at_cap:
            self._at_cap = True
            log.warning("refusing new RPC connections: %s", reason)
        return False

    async def listen(self, address: Address) -> Address:
        """Start listening; returns the bound address (port 0 picks a free port)."""
        loop = asyncio.get_running_loop()
        if address.scheme == "unix":
            if os.path.exists(address.path):
                os.unlink(address.path)
            server = await loop.create_unix_server(lambda: _Connection(self), address.path)
            os.chmod(address.path, 0o600)
            bound = address
        else:
            server = await loop.create_server(lambda: _Connection(self), address.host, address.port)
            port = server.sockets[0].getsockname()[1]
            bound = Address("tcp", host=address.host, port=port)
        self._servers.append(server)
        return bound

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.abort()
        await asyncio.sleep(0)  # connection_lost runs: handlers cancelled, disconnects started
        if self._disconnects:
            await asyncio.wait(list(self._disconnects), timeout=2)
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except (asyncio.TimeoutError, Exception):
                pass

    def _disconnected(self, session: Session) -> None:
        if self._on_disconnect is None or not session.role:
            return
        task = asyncio.get_running_loop().create_task(self._run_on_disconnect(session))
        self._disconnects.add(task)
        task.add_done_callback(self._disconnects.discard)

    async def _run_on_disconnect(self, session: Session) -> None:
        assert self._on_disconnect is not None
        try:
            await self._on_disconnect(session)
        except Exception:
            import traceback

            traceback.print_exc()

    def _refusal(self, session: Session, method: str, params: dict[str, Any],
                 roles: frozenset[str]) -> dict[str, str] | None:
        """The error answer if `session` may not make this request, else None."""
        if self._authorize is None:
            if session.role in roles:
                return None
            return {"code": ErrorCode.AUTH, "message": f"role {session.role!r} may not call {method!r}"}
        try:
            self._authorize(session, method, params)
        except RpcError as exc:
            return {"code": exc.code, "message": exc.message}
        except Exception as exc:  # a rule's bug refuses the request; it must not take the connection down
            log.exception("authorizing %s failed", method)
            return {"code": ErrorCode.INTERNAL, "message": f"authorizing {method!r}: {type(exc).__name__}: {exc}"}
        return None


def _error(request_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"i": request_id, "e": {"code": code, "message": message}}


class _Connection(asyncio.Protocol):
    """One peer's connection, as the server sees it: bytes in, frames parsed, handlers started."""

    def __init__(self, server: RpcServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self.session = Session()
        self._inflight: set[asyncio.Task[None]] = set()
        self._hello_timer: asyncio.TimerHandle | None = None
        self._admitted = False
        self._unauthenticated = False  # counted in the server's pre-hello connections
        self._authenticating = False  # a hello is being checked: later frames wait for it
        self._closed = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._outgoing: list[bytes] | None = None  # answers of this loop turn, written together

    # -- transport callbacks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        server = self._server
        if not server._admit():
            self._closed = True
            transport.abort()
            return
        self._admitted = True
        server._connections.add(self)
        server._unauthenticated += 1
        self._unauthenticated = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.session.peer = str(transport.get_extra_info("peername") or "unix")
        self._hello_timer = self._loop.call_later(server._hello_timeout, self._hello_expired)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._process()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._closed = True
        server = self._server
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self._unauthenticated:
            self._unauthenticated = False
            server._unauthenticated -= 1
        self.session.closed.set()
        self._writable.set()
        for task in list(self._inflight):
            task.cancel()
        server._connections.discard(self)
        server._disconnected(self.session)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- frames ---------------------------------------------------------------------------------

    def _process(self) -> None:
        """Handle every whole frame in the buffer (until a hello is being checked)."""
        buffer = self._buffer
        header = framing._HEADER.size
        pos = 0
        try:
            while not self._closed and not self._authenticating and len(buffer) - pos >= header:
                (length,) = framing._HEADER.unpack_from(buffer, pos)
                limit = framing.MAX_FRAME_BYTES if self.session.role else PRE_AUTH_FRAME_BYTES
                if length > limit:
                    self._send(_error(None, ErrorCode.INVALID, f"malformed request: peer announced a {length}-byte "
                                                               f"frame; the limit is {limit}"))
                    self._close()
                    return
                end = pos + header + length
                if len(buffer) < end:
                    return
                body = bytes(buffer[pos + header:end])
                pos = end
                try:
                    message = framing.decode(body)
                except framing.FrameError as exc:
                    self._send(_error(None, ErrorCode.INVALID, f"malformed request: {exc}"))
                    self._close()
                    return
                self._request(message)
        finally:
            if pos:
                del buffer[:pos]

    def _request(self, message: dict[str, Any]) -> None:
        request_id = message.get("i")
        method = message.get("m")
        params = message.get("p", {})
        if not isinstance(method, str) or not isinstance(params, dict):
            self._send(_error(request_id, ErrorCode.INVALID,
                              "malformed request: needs a method name and a params map"))
            return
        session = self.session
        if not session.role:
            if method != "hello":
                self._send(_error(request_id, ErrorCode.AUTH, "the first request must be 'hello' with a token"))
                self._close()
                return
            self._authenticating = True
            if self._transport is not None:
                self._transport.pause_reading()
            self._spawn(self._hello(request_id, params))
            return
        entry = self._server._handlers.get(method)
        if entry is None:
            self._send(_error(request_id, ErrorCode.INVALID, f"unknown method {method!r}"))
            return
        handler, roles = entry
        refusal = self._server._refusal(session, method, params, roles)
        if refusal is not None:
            self._send({"i": request_id, "e": refusal})
            return
        try:
            answer = handler(session, params)
        except Exception as exc:  # a plain handler's (or a bad call's) error, answered as _run does
            self._send_error(request_id, exc)
            return
        if isinstance(answer, Ready):
            self._send({"i": request_id, "r": answer.value})
            return
        if getattr(handler, "_rpc_eager", False) and isinstance(answer, Coroutine):
            self._start_eagerly(request_id, answer)
            return
        self._spawn(self._run(request_id, answer))

    def _start_eagerly(self, request_id: Any, coro: Coroutine[Any, Any, Any]) -> None:
        """Run an `eager` handler's first step now; a task drives the rest if it suspends."""
        try:
            waiting = coro.send(None)
        except StopIteration as stop:
            self._send({"i": request_id, "r": stop.value})
            return
        except asyncio.CancelledError:
            return
        except Exception as exc:
            self._send_error(request_id, exc)
            return
        self._spawn(self._resume(request_id, coro, waiting))

    async def _resume(self, request_id: Any, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        """Drive a coroutine started by `_start_eagerly`, as a task would: wait for the future it
        yielded, then step it again (it reads the future's outcome itself)."""
        while True:
            error: BaseException | None = None
            try:
                if waiting is None:
                    await asyncio.sleep(0)  # a bare yield: asyncio.sleep(0)
                else:
                    waiting._asyncio_future_blocking = False  # taken over, as Task.__step does
                    await waiting
            except asyncio.CancelledError as exc:
                # This task was cancelled: the future was cancelled with it (then the coroutine
                # sees that itself), unless it had finished already.
                if waiting is None or not waiting.cancelled():
                    error = exc
            except Exception:
                pass  # the future's own error: the coroutine reads it from the future
            try:
                waiting = coro.send(None) if error is None else coro.throw(error)
            except StopIteration as stop:
                self._answer(request_id, stop.value)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._send_error(request_id, exc, at_once=True)
                break
        await self._backpressure()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _hello(self, request_id: Any, params: dict[str, Any]) -> None:
        try:
            result = await self._server._authenticate(self.session, params)
        except RpcError as exc:
            self._send(_error(request_id, exc.code, exc.message))
            self._close()
            return
        except Exception:
            log.exception("authenticating a peer failed")
            self._close()
            return
        if self._closed:
            return
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        if self._unauthenticated:
            self._unauthenticated = False
            self._server._unauthenticated -= 1
        self._send({"i": request_id, "r": result})
        self._authenticating = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()
        self._process()  # requests that arrived behind the hello

    def _hello_expired(self) -> None:
        self._hello_timer = None
        if self.session.role or self._authenticating or self._closed:
            return
        self._send(_error(None, ErrorCode.AUTH, f"no hello within {self._server._hello_timeout:g} s; closing"))
        self._close()

    async def _run(self, request_id: Any, answer: Awaitable[Any]) -> None:
        try:
            result = await answer
            self._answer(request_id, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._send_error(request_id, exc, at_once=True)
        await self._backpressure()

    def _answer(self, request_id: Any, result: Any) -> None:
        self._send({"i": request_id, "r": result}, at_once=True)

    async def _backpressure(self) -> None:
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size() > 1 << 20:
            await self._writable.wait()  # a slow reader: don't pile up its answers in memory

    def _send_error(self, request_id: Any, exc: Exception, *, at_once: bool = False) -> None:
        if isinstance(exc, RpcError):
            self._send(_error(request_id, exc.code, exc.message), at_once=at_once)
        elif isinstance(exc, TypeError):
            self._send(_error(request_id, ErrorCode.INVALID, f"bad parameters: {exc}"), at_once=at_once)
        else:  # a handler bug must not take the connection down
            import traceback

            traceback.print_exception(exc)
            self._send(_error(request_id, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}"), at_once=at_once)

    # -- output ---------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any], *, at_once: bool = False) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        try:
            data = framing.encode(message)
        except framing.FrameError as exc:
            data = framing.encode(_error(message.get("i"), ErrorCode.INTERNAL, str(exc)))
        # The answer of a task that was the connection's only request in flight (a `.remote()`'s
        # call.run, a container's riding poll) is written now: deferring it to the end of the
        # loop turn would cost the caller a loop pass for nothing to batch with.
        if at_once and self._outgoing is None and len(self._inflight) <= 1:
            transport.write(data)
            return
        # The answers a connection gets in one turn of the loop (a container's web responses,
        # outputs and next inputs) go out in one write: a send syscall per answer was a tenth of
        # the control plane's time under web load.
        if self._outgoing is None:
            self._outgoing = [data]
            self._loop.call_soon(self._flush)
        else:
            self._outgoing.append(data)

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, None
        transport = self._transport
        if outgoing and transport is not None and not transport.is_closing():
            transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def _close(self) -> None:
        self._flush()
        self._closed = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
