"""One client connection of the gateway: HTTP/1.1 parsing (httptools' C parser), keep-alive,
pipelining (one request at a time; later ones wait), the WebSocket hand-over, and the limits that
keep a connection cheap before anything knows who the client is (docs/web.md, "Limits").

What a connection holds is bounded: the request head by `HeadBudget` (414/431), the time to send
it by the header timeout (408), an idle connection by the keep-alive timeout, and everything else
by pausing reading while a body backlog, pipelined requests or unread answers wait. Closing after
an error answer lingers (as nginx does) so the client reads the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING

import httptools

from . import websocket_frames as wsf
from .http_limits import HeadBudget, HeadRejected
from .web_exchange import Exchange, ResponseWriter

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("skylift.server")

WRITE_HIGH_WATER = 1024 * 1024
# Requests a client may send ahead of the answer it waits for; beyond, it is misbehaving (closed).
MAX_PIPELINED = 64
# How long a connection closed after an error answer keeps draining the client's bytes (nginx: 5 s).
LINGER_SECONDS = 2.0


class Request:
    __slots__ = ("bodiless", "body", "complete", "content_length", "exchange", "headers", "http11", "keep_alive",
                 "method", "responded", "streaming", "target", "upgrade", "waiting_body")

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], http11: bool,
                 keep_alive: bool, upgrade: bool) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.http11 = http11
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.body = bytearray()
        self.complete = False
        self.content_length: int | None = None
        # Neither Content-Length nor Transfer-Encoding (a GET): no body will follow the head, so
        # the input need not wait for the end of the message.
        self.bodiless = False
        self.exchange: Exchange | None = None
        self.responded = False
        self.streaming = False  # body bytes go to the exchange as they arrive
        self.waiting_body = False  # submitted once the (small) body is complete

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests, hands them to the gateway one at a time, and keeps
    what it holds bounded (docs/web.md, "Limits"): the head by `HeadBudget`, the time to send it
    by the header timeout, an idle connection by the keep-alive timeout, and everything else by
    pausing reading while a body backlog, a queue of pipelined requests or unread responses wait."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        config = gateway.config
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.peer: tuple[str, int] = ("", 0)
        self.active: Request | None = None
        self.incoming: Request | None = None
        self.queue: deque[Request] = deque()
        self.closed = False
        self.ws: wsf.FrameParser | None = None
        self.ws_exchange: Exchange | None = None
        self.head = HeadBudget(config.max_url, config.max_head, config.max_headers)
        self._in_head = False  # between the first byte of a request and the end of its head
        self._head_began = False  # ... and that first byte was in the read being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._drain: asyncio.Future[None] | None = None
        self._paused_writing = False
        self._paused: set[str] = set()  # why reading is paused: "body", "queue", "write"
        # One deadline at a time (head, idle, small body), kept as a number: arming it per request
        # is an assignment, and the one timer below only wakes to compare (see `_arm`).
        self._deadline = 0.0  # loop time; 0: none
        # Made by the server in its loop; kept, since asking for the running loop is a system
        # call (getpid) on Python 3.11, and arming happens per request.
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self.admitted = False  # counted in the gateway's connections (under the cap)

    # ---- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
        self.admitted = self.gateway.admit(self)
        if not self.admitted:
            ResponseWriter(self, head_only=False, keep_alive=False, http11=True).error(
                503, "the gateway has too many open connections; retry later")
            return
        self._arm(self.gateway.config.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.ws is not None:
            self._ws_data(data)
            return
        parser = self.parser
        if parser is None:
            return
        began_earlier = self._in_head
        self._head_began = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            request = self.incoming
            if request is None or request is not self.active or request.exchange is None:
                self._linger()  # answered already (an error): nothing will speak the new protocol
                return
            rest = data[exc.args[0]:] if exc.args and isinstance(exc.args[0], int) else b""
            self.ws = wsf.FrameParser()
            if rest:
                self._ws_data(rest)
            return
        except httptools.HttpParserCallbackError as exc:
            self._callback_failed(exc)
            return
        except httptools.HttpParserError as exc:
            self._fail_fast(400, f"malformed HTTP request: {exc}")
            return
        if self._in_head and began_earlier and not self._head_began and not self.closed:
            try:
                self.head.add_read(len(data))
            except HeadRejected as rejected:
                self._refuse(rejected)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self.gateway.release(self)
        for request in [self.active, *self.queue]:
            if request is not None and request.exchange is not None:
                request.exchange.disconnected()
        if self.ws_exchange is not None:
            self.ws_exchange.disconnected()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        # Let go of everything a request may have buffered now, not when the last exchange that
        # points at this connection is collected (the parser and this object form a cycle).
        self.parser = None
        self.active = self.incoming = None
        self.queue.clear()
        self.ws = None
        self.ws_exchange = None
        self._url = b""
        self._headers = []

    def pause_writing(self) -> None:
        self._paused_writing = True
        self._pause("write")  # a client that doesn't read its answers sends no more requests

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._resume("write")
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ---- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.incoming = None
        self._url = b""
        self._headers = []
        self.head.reset()
        self._in_head = self._head_began = True
        if self.active is None:
            self._arm(self.gateway.config.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.head.add_url(len(url))  # raises HeadRejected: the parser stops here
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head.add_header(name, value)
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self.closed:
            return  # the rest of a read that arrived after the connection was answered and closed
        parser = self.parser
        assert parser is not None
        request = Request(parser.get_method(), self._url, self._headers, parser.get_http_version() == "1.1",
                          parser.should_keep_alive(), parser.should_upgrade())
        length = chunked = None
        for key, value in self._headers:
            if key == b"content-length":
                length = value
            elif key == b"transfer-encoding":
                chunked = value
        if length is not None and length.isdigit():
            request.content_length = int(length)
        request.bodiless = chunked is None and (length is None or request.content_length == 0)
        self.incoming = request
        if self.active is None:
            self._disarm()
            self.active = request
            self.gateway.begin(self, request)
        elif len(self.queue) >= MAX_PIPELINED:
            raise HeadRejected(0, "too many pipelined requests")  # closes: answers can't jump the queue
        else:
            self.queue.append(request)
            self._pause("queue")

    def on_body(self, body: bytes) -> None:
        request = self.incoming
        if request is None or request.responded:
            return  # answered already (an error, or an app that didn't read it all): the rest is dropped
        if request.streaming and request.exchange is not None:
            request.exchange.feed(body, True)
            if request.exchange.body_bytes > self.gateway.config.max_body:
                self._fail_fast(413, self.gateway.too_large())
            return
        if request is self.active and request.exchange is None:
            return  # a request the gateway answers itself (a result URL) has no use for a body
        request.body += body
        if len(request.body) > self.gateway.config.max_body:
            self._fail_fast(413, self.gateway.too_large())
        elif len(request.body) > self.gateway.config.inline_body:
            self._pause("body")  # a queued request's body waits for its turn in the socket

    def on_message_complete(self) -> None:
        request = self.incoming
        if request is None:
            return
        request.complete = True
        if request.streaming and request.exchange is not None:
            request.exchange.feed(b"", False)
        elif request.waiting_body and request.exchange is not None:
            request.waiting_body = False
            self._disarm()
            self.gateway.submit(request.exchange, bytes(request.body), more=False)
        if request is self.active and request.responded:
            self._next()

    # ---- used by exchanges -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def response_done(self, keep_alive: bool) -> None:
        request = self.active
        if not keep_alive or request is None or not request.keep_alive:
            self._linger()
            return
        request.responded = True
        if request.complete:
            self._next()
        else:
            self._resume("body")  # read (and drop) the rest of its body, for as long as an idle connection
            self._arm(self.gateway.config.keepalive_timeout)

    def _next(self) -> None:
        self.active = None
        if self.queue:
            request = self.queue.popleft()
            self.active = request
            if not self.queue:
                self._resume("queue")
            self.gateway.begin(self, request)
        elif not self.closed:
            config = self.gateway.config
            self._arm(config.header_timeout if self._in_head else config.keepalive_timeout)

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _linger(self) -> None:
        """Close after an answer, the way nginx's lingering close does: send FIN after the answer,
        then read and drop what the client still sends for a moment. Closing with unread bytes
        would send a reset, and the client's TCP stack would drop the answer (a 413 or 431 sent
        while the client is still writing would never be seen)."""
        transport = self.transport
        if transport is None or self.closed:
            return
        if not self.admitted or not transport.can_write_eof():
            self.close()
            return
        self.closed = True  # nothing more is parsed or written
        self._disarm()
        transport.write_eof()
        self._paused.clear()
        transport.resume_reading()
        self._linger_timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def pause_reading(self) -> None:
        self._pause("body")

    def resume_reading(self) -> None:
        self._resume("body")

    def _pause(self, reason: str) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    async def drain(self) -> None:
        if not self._paused_writing or self.closed:
            return
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()
        await self._drain

    def wait_body(self) -> None:
        """The active request's (small) body is read before its input starts: within a deadline."""
        self._arm(self.gateway.config.keepalive_timeout)

    def upgrade(self, exchange: Exchange) -> None:
        self.ws_exchange = exchange
        if self.ws is None:
            self.ws = wsf.FrameParser()

    # ---- timeouts ----------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        """One deadline at a time: for the head being received, for an idle connection, or for a
        small body. Arming is per request, so it only sets a number; the connection's one timer is
        created when none is pending and, when it fires before the deadline, sleeps again for at
        most the shorter of the two timeouts — so no later arming can need an earlier wake-up."""
        if self.closed:
            return
        loop = self._loop
        deadline = loop.time() + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._tick)

    def _disarm(self) -> None:
        """No deadline now (a request is in progress); a pending timer finds nothing to do."""
        self._deadline = 0.0
        if self.closed and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        if self.closed or not self._deadline:
            return
        loop = self._loop
        now = loop.time()
        if now >= self._deadline:
            self._deadline = 0.0
            self._expired()
            return
        config = self.gateway.config
        shortest = min(config.header_timeout, config.keepalive_timeout)
        self._timer = loop.call_at(min(self._deadline, now + shortest), self._tick)

    def _expired(self) -> None:
        active = self.active
        if self.closed or (active is not None and not active.responded and not active.waiting_body):
            return  # a request in progress: the gateway's request timeout applies instead
        config = self.gateway.config
        if active is not None and active.waiting_body:
            self._fail_fast(408, f"the request body did not arrive within {config.keepalive_timeout:g} s "
                                 "(SKYLIFT_WEB_KEEPALIVE_TIMEOUT on the server)")
        elif self._in_head:
            self.gateway.timed_out += 1
            self._fail_fast(408, f"the request head did not arrive within {config.header_timeout:g} s "
                                 "(SKYLIFT_WEB_HEADER_TIMEOUT on the server)")
        self.close()

    # ---- failures ----------------------------------------------------------------------------

    def _callback_failed(self, exc: httptools.HttpParserCallbackError) -> None:
        cause = exc.__context__
        if self.closed:
            return
        if isinstance(cause, HeadRejected):
            self._refuse(cause)
        elif cause is not None:  # a bug of ours, not the client's: say so, and don't blame the request
            log.error("web gateway: internal error handling a request from %s:%d", *self.peer, exc_info=cause)
            self._fail_fast(500, "internal error in the gateway")
        else:
            self._fail_fast(400, f"malformed HTTP request: {exc}")

    def _refuse(self, rejected: HeadRejected) -> None:
        if not rejected.status:
            self.close()
            return
        self.gateway.rejected[rejected.status] = self.gateway.rejected.get(rejected.status, 0) + 1
        self._fail_fast(rejected.status, rejected.text)

    def _ws_data(self, data: bytes) -> None:
        assert self.ws is not None
        exchange = self.ws_exchange
        try:
            events = self.ws.feed(data)
        except wsf.ProtocolError as exc:
            if exchange is None:  # no 101 yet: the client still speaks HTTP and gets an HTTP answer
                self._fail_fast(400, f"invalid WebSocket data before the handshake completed: {exc.reason}")
                return
            self.write(wsf.close_frame(exc.code, exc.reason))
            self.close()
            return
        if exchange is not None:
            for opcode, payload in events:
                exchange.ws_event(opcode, payload)

    def _fail_fast(self, status: int, text: str) -> None:
        request = self.active or self.incoming
        writer = ResponseWriter(self, head_only=False, keep_alive=False, http11=True)
        if request is not None and request.exchange is not None:
            exchange = request.exchange
            request.exchange = None
            exchange.disconnected()
            if exchange.writer is not None and exchange.writer.started:
                self.close()
                return
        writer.error(status, text)
