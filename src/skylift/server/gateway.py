"""The HTTP gateway: every web endpoint of every app, on one loopback port of the control plane.

An asyncio `Protocol` with httptools' C parser: no framework, no per-request allocations beyond
the request itself, keep-alive, one request at a time per connection (pipelined ones wait).
A request is matched to an endpoint by host (`<label>.localhost:PORT`) or by its first path
segment (`/<label>/...`), checked (404, 401, 413, 503), and becomes an input of the endpoint's
pool; `web_exchange.Exchange` carries it from there. See docs/web.md for the whole flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from .._protocol import ids
from . import websocket_frames as wsf
from .calls import Call
from .web_exchange import Exchange, ResponseWriter
from .web_routes import Route, Routes, endpoint_label, web_endpoints

if TYPE_CHECKING:
    from .catalog import AppEntry
    from .control_plane import ControlPlane
    from .proxy_auth import ProxyTokens

log = logging.getLogger("skylift.server")

RESULT_PREFIX = b"/__skylift/calls/"
DETACHED_KEEP_SECONDS = 3600.0
WRITE_HIGH_WATER = 1024 * 1024


@dataclass
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 0
    # Modal: a request that has no answer after 150 s gets a 303 to a URL that waits for it.
    timeout: float = 150.0
    # Modal accepts request bodies up to 4 GiB; they stream, so memory is not the limit.
    max_body: int = 4 * 1024 ** 3
    # A body up to this size travels inside the input; a bigger one streams (container.web_receive).
    inline_body: int = 1024 * 1024
    # Host names `<label>.<domain>` route by host; anything else routes by path.
    domain: str = "localhost"

    @classmethod
    def from_env(cls, host: str = "127.0.0.1", port: int | None = None) -> GatewayConfig:
        env = os.environ
        return cls(host=env.get("SKYLIFT_WEB_HOST") or host,
                   port=int(env["SKYLIFT_WEB_PORT"]) if env.get("SKYLIFT_WEB_PORT") else (port or 0),
                   timeout=float(env.get("SKYLIFT_WEB_TIMEOUT") or 150.0),
                   max_body=int(env.get("SKYLIFT_WEB_MAX_BODY") or 4 * 1024 ** 3),
                   domain=env.get("SKYLIFT_WEB_DOMAIN") or "localhost")


class Request:
    __slots__ = ("body", "complete", "content_length", "exchange", "headers", "http11", "keep_alive", "method",
                 "responded", "streaming", "target", "upgrade", "waiting_body")

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
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: tuple[str, int] = ("", 0)
        self.active: Request | None = None
        self.incoming: Request | None = None
        self.queue: deque[Request] = deque()
        self.closed = False
        self.ws: wsf.FrameParser | None = None
        self.ws_exchange: Exchange | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._drain: asyncio.Future[None] | None = None
        self._paused_writing = False

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
        self.gateway.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self._ws_data(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[exc.args[0]:] if exc.args and isinstance(exc.args[0], int) else b""
            self.ws = wsf.FrameParser()
            if rest:
                self._ws_data(rest)
        except httptools.HttpParserError as exc:
            self._fail_fast(400, f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.connections.discard(self)
        for request in [self.active, *self.queue]:
            if request is not None and request.exchange is not None:
                request.exchange.disconnected()
        if self.ws_exchange is not None:
            self.ws_exchange.disconnected()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # ---- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        request = Request(parser.get_method(), self._url, self._headers, parser.get_http_version() == "1.1",
                          parser.should_keep_alive(), parser.should_upgrade())
        length = request.header(b"content-length")
        if length is not None and length.isdigit():
            request.content_length = int(length)
        self.incoming = request
        if self.active is None:
            self.active = request
            self.gateway.begin(self, request)
        else:
            self.queue.append(request)
            if self.transport is not None:
                self.transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self.incoming
        if request is None or request.responded:
            return  # answered already (an error, or an app that didn't read it all): the rest is dropped
        if request.streaming and request.exchange is not None:
            request.exchange.feed(body, True)
            if request.exchange.body_bytes > self.gateway.config.max_body:
                self._fail_fast(413, self.gateway.too_large())
            return
        request.body += body
        if len(request.body) > self.gateway.config.max_body:
            self._fail_fast(413, self.gateway.too_large())

    def on_message_complete(self) -> None:
        request = self.incoming
        if request is None:
            return
        request.complete = True
        if request.streaming and request.exchange is not None:
            request.exchange.feed(b"", False)
        elif request.waiting_body and request.exchange is not None:
            request.waiting_body = False
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
            self.close()
            return
        request.responded = True
        if request.complete:
            self._next()
        else:
            self.resume_reading()  # read (and drop) the rest of its body

    def _next(self) -> None:
        self.active = None
        if self.queue:
            request = self.queue.popleft()
            self.active = request
            if not self.queue and self.transport is not None:
                self.transport.resume_reading()
            self.gateway.begin(self, request)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed and not self.queue:
            self.transport.resume_reading()

    async def drain(self) -> None:
        if not self._paused_writing or self.closed:
            return
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()
        await self._drain

    def upgrade(self, exchange: Exchange) -> None:
        self.ws_exchange = exchange
        if self.ws is None:
            self.ws = wsf.FrameParser()

    def _ws_data(self, data: bytes) -> None:
        assert self.ws is not None
        exchange = self.ws_exchange
        try:
            events = self.ws.feed(data)
        except wsf.ProtocolError as exc:
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


class Gateway:
    def __init__(self, cp: ControlPlane, tokens: ProxyTokens, config: GatewayConfig | None = None) -> None:
        self.cp = cp
        self.tokens = tokens
        self.config = config or GatewayConfig()
        self.routes = Routes(cp.catalog)
        self.exchanges: dict[str, Exchange] = {}  # by input id
        self.detached: dict[str, Exchange] = {}  # by call id
        self.connections: set[HttpConnection] = set()
        self.url = ""
        self._server: asyncio.base_events.Server | None = None

    async def start(self, remember: Path | None = None) -> str:
        """Listen. With port 0, reuse the port remembered in `remember` if it is free, so URLs
        survive a restart of the control plane, and remember the one chosen."""
        loop = asyncio.get_running_loop()
        ports = [self.config.port]
        if self.config.port == 0 and remember is not None:
            with contextlib.suppress(OSError, ValueError):
                ports.insert(0, int(remember.read_text().strip()))
        for n, port in enumerate(ports):
            try:
                self._server = await loop.create_server(lambda: HttpConnection(self), self.config.host, port,
                                                        reuse_address=True, backlog=1024)
                break
            except OSError:
                if n == len(ports) - 1:
                    raise
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{self.config.host}:{port}"
        if remember is not None and self.config.port == 0:
            with contextlib.suppress(OSError):
                remember.write_text(f"{port}\n")
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()

    # ---- URLs --------------------------------------------------------------------------------

    def url_for(self, label: str) -> str:
        return f"{self.url}/{label}"

    def web_urls_for(self, app: AppEntry, tag: str, definition: dict[str, Any]) -> dict[str, str]:
        """method name ("" for a function) → URL, for each web endpoint of a definition."""
        return {method or "": self.url_for(endpoint_label(app, tag, method, web))
                for method, web in web_endpoints(definition).items()}

    def too_large(self) -> str:
        return (f"the request body is larger than the limit of {self.config.max_body} bytes "
                "(SKYLIFT_WEB_MAX_BODY on the server)")

    # ---- requests ----------------------------------------------------------------------------

    def begin(self, conn: HttpConnection, request: Request) -> None:
        writer = ResponseWriter(conn, head_only=request.method == b"HEAD", keep_alive=request.keep_alive,
                                http11=request.http11)
        try:
            url = httptools.parse_url(request.target)
        except httptools.HttpParserInvalidURLError:
            writer.error(400, f"bad request target {request.target[:200]!r}")
            return
        path: bytes = url.path or b"/"
        if path.startswith(RESULT_PREFIX):
            asyncio.get_running_loop().create_task(self._result(path[len(RESULT_PREFIX):].decode(), writer))
            return
        label, root_path, path = self._label(request, path)
        route = self.routes.find(label) if label else None
        if route is None:
            writer.error(404, f"no web endpoint at {request.target.decode('latin-1')[:200]}"
                         + (f" (no endpoint is labelled {label!r})" if label else ""))
            return
        if route.requires_proxy_auth and not self.tokens.verify(request.header(b"modal-key"),
                                                                request.header(b"modal-secret")):
            writer.error(401, "this endpoint requires proxy auth: send the Modal-Key and Modal-Secret headers of "
                              "a token from `skylift token create-proxy`")
            return
        function = self.cp.catalog.functions.get(route.function_id)
        if function is None or not function.app.running:
            writer.error(404, f"no web endpoint labelled {label!r}")
            return
        if request.content_length is not None and request.content_length > self.config.max_body:
            writer.keep_alive = False
            writer.error(413, self.too_large())
            return
        if function.request.gpus:
            reason = self.cp.scaler.unplaceable(function)
            if reason is not None:
                writer.error(503, f"{route.label} can't start a container: {reason}")
                return
        scope = self._scope(conn, request, route, root_path, path, url.query or b"")
        exchange = Exchange(self, conn, route, scope, writer)
        request.exchange = exchange
        if request.upgrade or request.complete:
            self.submit(exchange, bytes(request.body), more=False)
        elif request.content_length is not None and request.content_length <= self.config.inline_body:
            request.waiting_body = True
        else:
            request.streaming = True
            self.submit(exchange, bytes(request.body), more=True)

    def _label(self, request: Request, path: bytes) -> tuple[str, str, bytes]:
        """(label, root_path, path) by host name, else by the first path segment."""
        host = (request.header(b"host") or b"").decode("latin-1").rsplit(":", 1)[0].lower()
        suffix = "." + self.config.domain
        if host.endswith(suffix) and host.count(".") == suffix.count("."):
            return host[:-len(suffix)], "", path
        segment, _, rest = path[1:].partition(b"/")
        label = segment.decode("latin-1").lower()
        return label, "/" + label, b"/" + segment + b"/" + rest

    def _scope(self, conn: HttpConnection, request: Request, route: Route, root_path: str, raw_path: bytes,
               query: bytes) -> dict[str, Any]:
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        scope: dict[str, Any] = {
            "type": "websocket" if request.upgrade else "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1" if request.http11 else "1.0",
            "scheme": "ws" if request.upgrade else "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": root_path,
            "headers": request.headers,
            "client": list(conn.peer),
            "server": [self.config.host, int(self.url.rsplit(":", 1)[1])],
        }
        if request.upgrade:
            protocols = request.header(b"sec-websocket-protocol")
            scope["subprotocols"] = [p.strip() for p in protocols.decode().split(",")] if protocols else []
        else:
            scope["method"] = request.method.decode("latin-1")
        return scope

    def submit(self, exchange: Exchange, body: bytes, *, more: bool) -> None:
        route = exchange.route
        function = self.cp.catalog.functions.get(route.function_id)
        if function is None or not function.app.running:
            if exchange.writer is not None:
                exchange.writer.error(404, f"no web endpoint labelled {route.label!r}")
            return
        call = Call(ids.new_id("call"), function, self.cp.pools.get(function, None), kind="unary",
                    invocation="sync", created_at=time.time())
        request = {"scope": exchange.scope, "body": body, "more_body": more}
        item: dict[str, Any] = {"args": pickle.dumps(((request,), {}), protocol=4)}
        if route.method is not None:
            item["method"] = route.method
        inputs = self.cp.dispatcher.make_inputs(call, [item], "web")
        exchange.call = call
        exchange.input_id = inputs[0].input_id
        exchange.body_bytes = len(body)
        exchange.body_done = not more
        self.exchanges[exchange.input_id] = exchange
        self.cp.calls.add(call)
        self.cp.dispatcher.enqueue(call, inputs)
        asyncio.get_running_loop().create_task(self._wait(exchange, call))

    async def _wait(self, exchange: Exchange, call: Call) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        try:
            while not call.ready and not exchange.client_gone:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await call.signal.wait(remaining)
            if not call.ready and not exchange.client_gone:
                writer = exchange.writer
                if writer is not None and not writer.started and not exchange.websocket:
                    writer.redirect(exchange.detach())
            while not call.ready and not call.finished:
                await call.signal.wait(60.0)
            output = call.ready.popleft() if call.ready else None
        finally:
            self.exchanges.pop(exchange.input_id, None)
            self.cp.call_api.forget(call)
        exchange.finish(output)

    # ---- results of detached requests --------------------------------------------------------

    def keep_detached(self, exchange: Exchange) -> None:
        assert exchange.call is not None
        call_id = exchange.call.call_id
        self.detached[call_id] = exchange
        asyncio.get_running_loop().call_later(DETACHED_KEEP_SECONDS, self.detached.pop, call_id, None)

    async def _result(self, call_id: str, writer: ResponseWriter) -> None:
        exchange = self.detached.get(call_id)
        if exchange is None:
            writer.error(404, f"no pending web result {call_id!r} (results are kept "
                              f"{DETACHED_KEEP_SECONDS / 3600:g} h and can be fetched once)")
            return
        try:
            await asyncio.wait_for(exchange.done.wait(), self.config.timeout)
        except asyncio.TimeoutError:
            writer.redirect(f"{RESULT_PREFIX.decode()}{call_id}")
            return
        self.detached.pop(call_id, None)
        exchange.answer(writer, exchange.buffer, exchange.output)

    def describe(self) -> list[dict[str, Any]]:
        return [{"label": r.label, "function_id": r.function_id, "method": r.method, "url": self.url_for(r.label),
                 "requires_proxy_auth": r.requires_proxy_auth} for r in self.routes.all()]
