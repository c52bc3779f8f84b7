"""One web request on its way through the control plane: an input in, ASGI messages out.

The gateway turns a request into an input of the endpoint's pool whose argument is the ASGI
scope plus the request body when it is small (the common case: one input, nothing else to fetch),
packed as `_protocol/web_request.py` says.
The container runs the ASGI app and sends the response as ASGI messages with
`container.web_send`; a large or streamed body is pulled with `container.web_receive`. The input's
output only says how the app ended: a failure before any response becomes a 500, a container
that could not start a 503.

`ResponseWriter` turns `http.response.*` messages into HTTP/1.1 bytes on a connection
(Content-Length when the whole body is known, chunked otherwise). An exchange whose app has not
answered within the request timeout is *detached*: the client gets a 303 to a result URL and the
exchange keeps the messages until they are fetched there (Modal's 150 s rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from ..._protocol import api, web_request
from ..longpoll import Signal
from . import websocket_frames as wsf

if TYPE_CHECKING:
    from ..execution.calls import Call
    from .gateway import Gateway
    from .web_routes import Route

log = logging.getLogger("skylift.server")

_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
_STATUS_LINES = {code: b"HTTP/1.1 %d %b\r\n" % (code, reason) for code, reason in _REASONS.items()}
# How much request body may wait in the control plane for the container before reading pauses.
BODY_BUFFER = 4 * 1024 * 1024
MAX_RECEIVE_BYTES = 4 * 1024 * 1024

ERROR_STATUS = {
    api.STATUS_FAILURE: 500,
    api.STATUS_TIMEOUT: 504,
    api.STATUS_INIT_FAILURE: 503,
    api.STATUS_TERMINATED: 503,
    api.STATUS_INTERNAL_FAILURE: 503,
}


class Connection(Protocol):
    """What an exchange needs of the HTTP connection it answers on (`http_connection.HttpConnection`)."""

    def write(self, data: bytes) -> None: ...
    def response_done(self, keep_alive: bool) -> None: ...
    def close(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    async def drain(self) -> None: ...
    def upgrade(self, exchange: Exchange) -> None: ...


class ResponseWriter:
    """HTTP/1.1 framing of one response."""

    def __init__(self, conn: Connection, *, head_only: bool, keep_alive: bool, http11: bool) -> None:
        self.conn = conn
        self.head_only = head_only
        self.keep_alive = keep_alive
        self.http11 = http11
        self.status = 0
        self.header_lines = b""  # the app's header fields, formatted
        self.framed = False  # the app set Content-Length or Transfer-Encoding itself
        self.started = False  # head written
        self.finished = False
        self.chunked = False

    def start(self, status: int, headers: list[Any]) -> None:
        """Take the status and header fields (formatted now: anything but bytes-like raises here)."""
        lines = []
        framed = False
        for name, value in headers:
            lines.append(b"%b: %b\r\n" % (name, value))
            if not framed and len(name) in (14, 17):
                framed = bytes(name).lower() in (b"content-length", b"transfer-encoding")
        self.status = status
        self.header_lines = b"".join(lines)
        self.framed = framed

    def body(self, data: bytes, more: bool) -> None:
        if self.finished:
            return
        head = self._head(data, more) if not self.started else b""
        if self.head_only or not data:
            data = b""
        elif self.chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if not more:
            if self.chunked and not self.head_only:
                data += b"0\r\n\r\n"
            self.finished = True
        if head or data:
            self.conn.write(head + data if head else data)  # one write (one syscall) per message
        if not more:
            self.conn.response_done(self.keep_alive)

    def _head(self, first: bytes, more: bool) -> bytes:
        self.started = True
        status = self.status or 500
        head = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status, self.header_lines]
        bodiless = status < 200 or status in (204, 304)
        if not self.framed and not bodiless:
            if not more:
                head.append(b"content-length: %d\r\n" % len(first))
            elif self.http11:
                head.append(b"transfer-encoding: chunked\r\n")
                self.chunked = True
            else:
                self.keep_alive = False
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        return b"".join(head)

    def error(self, status: int, text: str) -> None:
        """A response of the gateway's own (nothing was sent yet)."""
        if self.started:
            self.abort()
            return
        body = (text.rstrip() + "\n").encode()
        self.start(status, [(b"content-type", b"text/plain; charset=utf-8")])
        self.body(body, False)

    def redirect(self, location: str) -> None:
        self.start(303, [(b"location", location.encode()), (b"content-type", b"text/plain; charset=utf-8")])
        self.body(b"The request is still running; follow the redirect for its result.\n", False)

    def abort(self) -> None:
        """The app stopped mid-response: end it as well as HTTP allows."""
        if self.finished:
            return
        if self.chunked and self.started:
            self.body(b"", False)
            return
        self.finished = True
        self.conn.close()


class Exchange:
    """Request state shared by the connection, the call and the container RPCs."""

    __slots__ = ("_done", "body_bytes", "body_done", "buffer", "call", "client_gone", "conn", "deadline", "detached",
                 "finished", "gateway", "headers", "inbound", "inbound_bytes", "input_id", "output", "request", "route",
                 "sender", "signal", "websocket", "writer", "ws_accepted", "ws_closed")

    def __init__(self, gateway: Gateway, conn: Connection | None, route: Route, request: web_request.Request,
                 headers: list[tuple[bytes, bytes]], writer: ResponseWriter | None) -> None:
        self.gateway = gateway
        self.conn = conn
        self.route = route
        self.request = request  # the input's argument, less its body (web_request.pack)
        self.headers = headers
        self.writer = writer
        self.websocket: bool = request[0]
        self.call: Call | None = None
        self.input_id = ""
        self.sender = ""  # the task that answers; another one (a redelivery) is told to stop
        self.inbound: deque[dict[str, Any]] = deque()
        self.inbound_bytes = 0
        self.body_bytes = 0
        self.body_done = False
        self.signal = Signal()
        self.client_gone = False
        self.detached = False
        self.deadline = float("inf")  # loop time after which a response not started is redirected
        self.finished = False  # the input has its final output
        self._done: asyncio.Event | None = None  # made only for a result URL that waits
        self.buffer: list[dict[str, Any]] = []  # messages kept for a detached exchange
        self.output: dict[str, Any] | None = None
        self.ws_accepted = False
        self.ws_closed = False

    # ---- request side ----------------------------------------------------------------------

    def feed(self, chunk: bytes, more: bool) -> None:
        """Body bytes (after the input was submitted) for `web_receive`."""
        self.body_bytes += len(chunk)
        self.inbound.append({"type": "http.request", "body": chunk, "more_body": more})
        self.inbound_bytes += len(chunk)
        if not more:
            self.body_done = True
        if self.inbound_bytes > BODY_BUFFER and self.conn is not None:
            self.conn.pause_reading()
        self.signal.notify()

    def take_inbound(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        size = 0
        while self.inbound and size < MAX_RECEIVE_BYTES:
            message = self.inbound.popleft()
            body = message.get("body")
            if messages and body is not None and messages[-1]["type"] == "http.request":
                last = messages[-1]  # coalesce body chunks into one message
                last["body"] = last["body"] + body
                last["more_body"] = message["more_body"]
            else:
                messages.append(message)
            size += len(body or message.get("bytes") or b"")
        self.inbound_bytes = max(0, self.inbound_bytes - size)
        if self.inbound_bytes <= BODY_BUFFER // 2 and self.conn is not None:
            self.conn.resume_reading()
        if not messages and self.client_gone:
            messages.append({"type": "websocket.disconnect", "code": 1006} if self.websocket
                            else {"type": "http.disconnect"})
        return messages

    def disconnected(self) -> None:
        """The client went away."""
        if self.client_gone or self.detached:
            return  # a detached exchange answers at its result URL, not on this connection
        self.client_gone = True
        self.conn = None
        self.signal.notify()
        call = self.call
        if call is not None and not call.finished and not self.detached:
            self.gateway.cp.dispatcher.cancel(call, message="the web client disconnected")

    # ---- response side ---------------------------------------------------------------------

    def respond(self, status: Any, headers: Any, body: Any) -> None:
        """A whole response (start and final body) in one go: the common case."""
        writer = self.writer
        if writer is not None and not writer.started and not self.websocket and not self.detached:
            writer.start(int(status), headers or [])
            writer.body(bytes(body or b""), False)
            return
        self.apply([{"type": "http.response.start", "status": status, "headers": headers},
                    {"type": "http.response.body", "body": body, "more_body": False}])

    def apply(self, messages: list[dict[str, Any]]) -> None:
        if self.detached:
            self.buffer.extend(messages)
            return
        writer = self.writer
        if (len(messages) == 2 and writer is not None and not writer.started and not self.websocket
                and not self.client_gone):  # the common case: a whole response in one go
            start, body = messages
            if start["type"] == "http.response.start" and body["type"] == "http.response.body":
                writer.start(int(start.get("status", 200)), start.get("headers") or [])
                writer.body(bytes(body.get("body") or b""), bool(body.get("more_body")))
                return
        for message in messages:
            if self.client_gone:
                return
            kind = message.get("type")
            if self.websocket:
                self._apply_ws(kind, message)
            elif kind == "http.response.start":
                if self.writer is not None and not self.writer.started:
                    self.writer.start(int(message.get("status", 200)), message.get("headers") or [])
            elif kind == "http.response.body" and self.writer is not None:
                self.writer.body(bytes(message.get("body") or b""), bool(message.get("more_body")))

    def _apply_ws(self, kind: Any, message: dict[str, Any]) -> None:
        conn = self.conn
        if conn is None or self.ws_closed:
            return
        if kind == "websocket.accept":
            if self.ws_accepted:
                return
            self.ws_accepted = True
            key = dict(self.headers).get(b"sec-websocket-key", b"")
            head = [b"HTTP/1.1 101 Switching Protocols\r\n", b"upgrade: websocket\r\n", b"connection: Upgrade\r\n",
                    b"sec-websocket-accept: %b\r\n" % wsf.accept_key(key)]
            if message.get("subprotocol"):
                head.append(b"sec-websocket-protocol: %b\r\n" % str(message["subprotocol"]).encode())
            head.extend(b"%b: %b\r\n" % (bytes(k), bytes(v)) for k, v in message.get("headers") or [])
            conn.write(b"".join(head) + b"\r\n")
            conn.upgrade(self)
        elif kind == "websocket.send" and self.ws_accepted:
            if message.get("bytes") is not None:
                conn.write(wsf.encode_frame(wsf.BINARY, bytes(message["bytes"])))
            else:
                conn.write(wsf.encode_frame(wsf.TEXT, str(message.get("text") or "").encode()))
        elif kind == "websocket.close":
            self.ws_closed = True
            if self.ws_accepted:
                conn.write(wsf.close_frame(int(message.get("code") or 1000), str(message.get("reason") or "")))
                conn.close()
            elif self.writer is not None:
                self.writer.error(403, "the app refused the WebSocket")

    def ws_event(self, opcode: int, payload: bytes) -> None:
        """A message from the client of an accepted WebSocket."""
        if opcode == wsf.TEXT:
            self.inbound.append({"type": "websocket.receive", "text": payload.decode("utf-8", "replace")})
        elif opcode == wsf.BINARY:
            self.inbound.append({"type": "websocket.receive", "bytes": payload})
        elif opcode == wsf.PING and self.conn is not None:
            self.conn.write(wsf.encode_frame(wsf.PONG, payload))
            return
        elif opcode == wsf.CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.inbound.append({"type": "websocket.disconnect", "code": code})
            if self.conn is not None and not self.ws_closed:
                self.ws_closed = True
                self.conn.write(wsf.close_frame(1000))
                self.conn.close()
        else:
            return
        self.inbound_bytes += len(payload)
        if self.inbound_bytes > BODY_BUFFER and self.conn is not None:
            self.conn.pause_reading()
        self.signal.notify()

    async def drain(self) -> None:
        if self.conn is not None and not self.detached:
            await self.conn.drain()

    # ---- the end ---------------------------------------------------------------------------

    @property
    def done(self) -> asyncio.Event:
        """Set once the input has its final output."""
        if self._done is None:
            self._done = asyncio.Event()
            if self.finished:
                self._done.set()
        return self._done

    def finish(self, output: dict[str, Any] | None) -> None:
        """The input has its final output (None: the call vanished)."""
        self.output = output
        self.finished = True
        if self._done is not None:
            self._done.set()
        if self.detached or self.client_gone:
            return
        self.answer(self.writer, self.buffer if self.detached else [], output)

    def answer(self, writer: ResponseWriter | None, messages: list[dict[str, Any]],
               output: dict[str, Any] | None) -> None:
        """Finish `writer` for this exchange: replay kept messages, then close what the app left open."""
        if writer is None:
            if self.websocket and self.conn is not None and not self.ws_closed:
                self.ws_closed = True
                self.conn.write(wsf.close_frame(1011 if _failed(output) else 1000))
                self.conn.close()
            return
        for message in messages:
            if message.get("type") == "http.response.start" and not writer.started:
                writer.start(int(message.get("status", 200)), message.get("headers") or [])
            elif message.get("type") == "http.response.body":
                writer.body(bytes(message.get("body") or b""), bool(message.get("more_body")))
        if writer.finished:
            return
        if self.websocket:
            if not self.ws_accepted:
                writer.error(*_error_for(output, self.route, websocket=True))
            elif self.conn is not None and not self.ws_closed:
                self.ws_closed = True
                self.conn.write(wsf.close_frame(1011 if _failed(output) else 1000))
                self.conn.close()
            return
        if writer.started or writer.status:
            if not writer.started and not _failed(output):
                writer.body(b"", False)  # a start without a body: an empty response
            else:
                writer.abort()
            return
        writer.error(*_error_for(output, self.route))

    def detach(self) -> str:
        """No answer in time: keep the result for the result URL, free the connection."""
        assert self.call is not None
        self.detached = True
        self.conn = None
        with contextlib.suppress(Exception):
            self.gateway.keep_detached(self)
        return f"/__skylift/calls/{self.call.call_id}"


def _failed(output: dict[str, Any] | None) -> bool:
    return output is None or output.get("status") != api.STATUS_SUCCESS


def _error_for(output: dict[str, Any] | None, route: Route, *, websocket: bool = False) -> tuple[int, str]:
    if output is None:
        return 503, f"{route.label}: the request was lost (the app stopped or the control plane restarted)"
    status = output.get("status")
    if status == api.STATUS_SUCCESS:
        if websocket:
            return 500, f"{route.label}: the app ended without accepting the WebSocket"
        return 500, f"{route.label}: the app returned without sending a response"
    code = ERROR_STATUS.get(str(status), 500)
    if code == 500:
        return 500, "Internal Server Error"  # the traceback is in the app's logs, not for the client
    message = str(output.get("exc_message") or status)
    return code, f"{route.label} is unavailable: {message}"
