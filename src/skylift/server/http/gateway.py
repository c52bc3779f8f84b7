"""The HTTP gateway: every web endpoint of every app, on one loopback port of the control plane.

Each connection is an asyncio `Protocol` with httptools' C parser (`http_connection.py`): no
framework, no per-request allocations beyond the request itself, keep-alive, one request at a time
per connection (pipelined ones wait), and bounded before anything knows who the client is (head
size 414/431, header timeout 408, idle timeout, connection cap 503; `GatewayConfig`). A request
is matched to an endpoint by host (`<label>.localhost:PORT`) or by its first path segment
(`/<label>/...`), checked (404, 401, 413, 503), and becomes an input of the endpoint's pool;
`web_exchange.Exchange` carries it from there. See docs/web.md for the whole flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from ..._protocol import ids, web_request
from ..execution.calls import Call
from ..longpoll import Signal
from .http_connection import HttpConnection, Request
from .web_exchange import Exchange, ResponseWriter
from .web_routes import Routes, endpoint_label, web_endpoints

if TYPE_CHECKING:
    from ..control_plane import ControlPlane
    from ..execution.catalog import AppEntry, FunctionEntry
    from .proxy_auth import ProxyTokens

log = logging.getLogger("skylift.server")

RESULT_PREFIX = b"/__skylift/calls/"
CALL_PREFIX = ids.PREFIXES["call"] + "-"
INPUT_PREFIX = ids.PREFIXES["input"] + "-"
DETACHED_KEEP_SECONDS = 3600.0


@dataclass
class GatewayConfig:
    """The gateway's settings; each has an environment variable of the server (docs/web.md, "Limits")."""

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
    # Before any check of who the peer is, a request head is bounded (http_limits.py): nginx's
    # request line and header field buffers are 8 KiB, its 431 threshold 4 x 8 KiB; Node's 16 KiB.
    max_url: int = 8 * 1024
    max_head: int = 64 * 1024
    max_headers: int = 100  # as Python's http.client and h11
    # The whole head must arrive this long after the connection (or the request) began: a peer
    # that trickles bytes (slowloris) is answered 408 and closed. nginx's client_header_timeout is
    # 60 s; a head is one packet in practice, so 10 s is generous.
    header_timeout: float = 10.0
    # A connection with no request in progress is closed after this long (nginx 75 s, uvicorn 5 s).
    keepalive_timeout: float = 60.0
    # Beyond this many open connections new ones get a 503 and are closed (nginx's default
    # worker_connections is 512-1024); long-lived WebSockets count too.
    max_connections: int = 1024

    @classmethod
    def from_env(cls, host: str = "127.0.0.1", port: int | None = None) -> GatewayConfig:
        env = os.environ
        default = cls()

        def number(name: str, fallback: float) -> float:
            text = env.get(name)
            if not text:
                return fallback
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"the gateway setting {name}={text!r} is not a number") from None
            if value <= 0:
                raise ValueError(f"the gateway setting {name}={text!r} must be positive")
            return value

        return cls(host=env.get("SKYLIFT_WEB_HOST") or host,
                   port=int(env["SKYLIFT_WEB_PORT"]) if env.get("SKYLIFT_WEB_PORT") else (port or 0),
                   timeout=number("SKYLIFT_WEB_TIMEOUT", default.timeout),
                   max_body=int(number("SKYLIFT_WEB_MAX_BODY", default.max_body)),
                   domain=env.get("SKYLIFT_WEB_DOMAIN") or "localhost",
                   max_url=int(number("SKYLIFT_WEB_MAX_URL", default.max_url)),
                   max_head=int(number("SKYLIFT_WEB_MAX_HEAD", default.max_head)),
                   max_headers=int(number("SKYLIFT_WEB_MAX_HEADERS", default.max_headers)),
                   header_timeout=number("SKYLIFT_WEB_HEADER_TIMEOUT", default.header_timeout),
                   keepalive_timeout=number("SKYLIFT_WEB_KEEPALIVE_TIMEOUT", default.keepalive_timeout),
                   max_connections=int(number("SKYLIFT_WEB_MAX_CONNECTIONS", default.max_connections)))


class Gateway:
    def __init__(self, cp: ControlPlane, tokens: ProxyTokens, config: GatewayConfig | None = None) -> None:
        self.cp = cp
        self.tokens = tokens
        self.config = config or GatewayConfig()
        self.routes = Routes(cp.catalog)
        self.exchanges: dict[str, Exchange] = {}  # by input id
        self.detached: dict[str, Exchange] = {}  # by call id
        self.connections: set[HttpConnection] = set()
        self.refused = 0  # connections turned away at the cap, in the current episode
        self.rejected: dict[int, int] = {}  # 414/431 answers, by status (for tests and figures)
        self.timed_out = 0  # heads that missed the header timeout
        self.url = ""
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._server_address = (self.config.host, self.config.port)  # the scope's "server"
        self._ids = RandomIds()
        self._running: asyncio.AbstractEventLoop | None = None
        self._delivering: list[Exchange] = []  # exchanges whose output came in this turn of the loop

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        # The loop `start` ran in: asking for the running loop is a system call (getpid) on
        # Python 3.11, and the gateway needs it a few times per request.
        return self._running or asyncio.get_running_loop()

    async def start(self, remember: Path | None = None) -> str:
        """Listen. With port 0, reuse the port remembered in `remember` if it is free, so URLs
        survive a restart of the control plane, and remember the one chosen."""
        loop = self._running = asyncio.get_running_loop()
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
        self._server_address = (self.config.host, int(port))
        if remember is not None and self.config.port == 0:
            with contextlib.suppress(OSError):
                remember.write_text(f"{port}\n")
        return self.url

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()

    def admit(self, conn: HttpConnection) -> bool:
        """Count a new connection in, unless the cap is reached (then log once, until it clears)."""
        cap = self.config.max_connections
        if len(self.connections) >= cap:
            if not self.refused:
                log.warning("web gateway: %d connections are open, the limit (SKYLIFT_WEB_MAX_CONNECTIONS=%d); "
                            "new ones get 503 until some close", len(self.connections), cap)
            self.refused += 1
            return False
        self.connections.add(conn)
        return True

    def release(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self.refused and len(self.connections) < self.config.max_connections * 9 // 10:
            log.info("web gateway: accepting connections again (%d were refused at the limit)", self.refused)
            self.refused = 0

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
        if function is None:  # (find checked that its app is running)
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
        exchange = Exchange(self, conn, route, self._request(conn, request, root_path, path, url.query or b""),
                            request.headers, writer)
        request.exchange = exchange
        if request.upgrade or request.complete or request.bodiless:
            self.submit(exchange, bytes(request.body), more=False, function=function)
        elif request.content_length is not None and request.content_length <= self.config.inline_body:
            request.waiting_body = True
            conn.wait_body()
        else:
            request.streaming = True
            self.submit(exchange, bytes(request.body), more=True, function=function)

    def _label(self, request: Request, path: bytes) -> tuple[str, str, bytes]:
        """(label, root_path, path) by host name, else by the first path segment."""
        host = (request.header(b"host") or b"").decode("latin-1").rsplit(":", 1)[0].lower()
        suffix = "." + self.config.domain
        if host.endswith(suffix) and host.count(".") == suffix.count("."):
            return host[:-len(suffix)], "", path
        segment, _, rest = path[1:].partition(b"/")
        label = segment.decode("latin-1").lower()
        return label, "/" + label, b"/" + segment + b"/" + rest

    def _request(self, conn: HttpConnection, request: Request, root_path: str, raw_path: bytes,
                 query: bytes) -> web_request.Request:
        """The input's argument (`_protocol/web_request.py`), its body still to come."""
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        subprotocols: list[str] = []
        if request.upgrade:
            protocols = request.header(b"sec-websocket-protocol")
            subprotocols = [p.strip() for p in protocols.decode().split(",")] if protocols else []
        return web_request.pack(websocket=request.upgrade, method=request.method.decode("latin-1"), path=path,
                                raw_path=raw_path, query_string=query, root_path=root_path, headers=request.headers,
                                client=conn.peer, server=self._server_address,
                                http_version="1.1" if request.http11 else "1.0", subprotocols=subprotocols,
                                body=b"", more_body=False)

    def submit(self, exchange: Exchange, body: bytes, *, more: bool, function: FunctionEntry | None = None) -> None:
        """Make the request an input of the endpoint's pool (`function`: when the caller just looked it up)."""
        route = exchange.route
        if function is None:
            function = self.cp.catalog.functions.get(route.function_id)
        if function is None or not function.app.running:
            if exchange.writer is not None:
                exchange.writer.error(404, f"no web endpoint labelled {route.label!r}")
            return
        call = Call(self._ids.take(CALL_PREFIX), function, self.cp.pools.get(function, None), kind="unary",
                    invocation="sync", created_at=time.time())
        # No task waits for the answer: the call's signal hands its output over when delivered.
        call.signal = _Delivery(self, exchange)
        request = (*exchange.request[:-2], body, more)
        item: dict[str, Any] = {"args": pickle.dumps(((request,), {}), protocol=4)}
        if route.method is not None:
            item["method"] = route.method
        inputs = self.cp.dispatcher.make_inputs(call, [item], "web", [self._ids.take(INPUT_PREFIX)])
        exchange.call = call
        exchange.input_id = inputs[0].input_id
        exchange.body_bytes = len(body)
        exchange.body_done = not more
        exchange.deadline = self._loop.time() + self.config.timeout
        self.exchanges[exchange.input_id] = exchange
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(self._sweep_interval(), self._sweep)
        self.cp.calls.add(call)
        self.cp.dispatcher.enqueue(call, inputs)

    def deliver_soon(self, exchange: Exchange) -> None:
        """Finish `exchange` after the current step: one callback for every output that arrives
        in this turn of the loop (a container's batch), not one each."""
        self._delivering.append(exchange)
        if len(self._delivering) == 1:
            self._loop.call_soon(self._deliver_all)

    def _deliver_all(self) -> None:
        exchanges, self._delivering = self._delivering, []
        for exchange in exchanges:
            try:
                self.delivered(exchange)
            except Exception:  # one broken response must not keep the others of the batch waiting
                log.exception("web gateway: could not finish the response of input %s", exchange.input_id)

    def delivered(self, exchange: Exchange) -> None:
        """The call of `exchange` has its output (or vanished): finish the response."""
        call = exchange.call
        if call is None or exchange.finished:
            return
        if call.ready:
            output: dict[str, Any] | None = call.ready.popleft()
        elif call.finished:
            output = None
        else:
            return  # a notification about something else (nothing delivered yet)
        self.exchanges.pop(exchange.input_id, None)
        self.cp.call_api.forget(call)
        if isinstance(call.signal, _Delivery):
            call.signal.release()  # the call and the exchange point at each other: let both go now
        exchange.finish(output)

    def _sweep_interval(self) -> float:
        return min(1.0, max(0.05, self.config.timeout / 5))

    def _sweep(self) -> None:
        """Requests with no response after the request timeout get a 303 to their result URL
        (one periodic check for all of them, rather than a timer each)."""
        self._sweeper = None
        now = self._loop.time()
        for exchange in list(self.exchanges.values()):
            if exchange.deadline > now or exchange.detached or exchange.client_gone:
                continue
            if exchange.call is not None and exchange.call.ready:
                continue  # answered just now: `delivered` runs next
            exchange.deadline = float("inf")  # decided once: redirected, or left to finish
            writer = exchange.writer
            if writer is not None and not writer.started and not exchange.websocket:
                writer.redirect(exchange.detach())
        if self.exchanges:
            self._sweeper = self._loop.call_later(self._sweep_interval(), self._sweep)

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


class RandomIds:
    """Ids as random as `ids.new_id`'s (a call id is the key to a detached request's result), drawn
    from one read of the system's randomness per 256 of them: a read per id was a syscall and a
    few percent of the gateway's time per request. Used from the event loop's thread only."""

    __slots__ = ("_hex", "_pos")

    BATCH = 256
    ID_BYTES = 11  # as ids.new_id's
    WIDTH = 2 * ID_BYTES

    def __init__(self) -> None:
        self._hex = ""
        self._pos = 0

    def take(self, prefix: str) -> str:
        pos = self._pos
        end = pos + self.WIDTH
        if end > len(self._hex):
            self._hex = secrets.token_bytes(self.ID_BYTES * self.BATCH).hex()
            pos, end = 0, self.WIDTH
        self._pos = end
        return prefix + self._hex[pos:end]


class _Delivery(Signal):
    """A web call's signal: it wakes long-polls as any call's does, and tells the gateway as soon
    as the output is delivered, so no task per request sits waiting for it."""

    __slots__ = ("_exchange", "_gateway")

    def __init__(self, gateway: Gateway, exchange: Exchange) -> None:
        super().__init__()
        self._gateway: Gateway | None = gateway
        self._exchange: Exchange | None = exchange

    def notify(self) -> None:
        super().notify()
        if self._gateway is not None and self._exchange is not None:
            # Not from inside the dispatcher's delivery loop: finishing a response may start the
            # connection's next (pipelined) request, which enqueues another input.
            self._gateway.deliver_soon(self._exchange)

    def release(self) -> None:
        """The output was handed over: drop the references that make a cycle (exchange -> call ->
        signal -> exchange), so a request's objects are freed at once rather than by the cyclic
        garbage collector, whose passes over them cost the control plane more than the request."""
        self._gateway = self._exchange = None
