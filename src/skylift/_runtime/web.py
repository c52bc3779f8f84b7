"""Web endpoints inside the container: build the ASGI app once, then answer each web input with it.

At start (after `@enter`), each web endpoint of the definition becomes an ASGI app:
`fastapi_endpoint` wraps the function in FastAPI as Modal does (CORS open, `/docs` with
`docs=True`), `asgi_app` calls the user's factory, `wsgi_app` wraps the factory's WSGI app
(`wsgi.py`), and `web_server` calls the function and proxies to the port it opened
(`web_proxy.py`). ASGI lifespan startup runs here too; a failure is a failed container start.

A web input's argument is the request as `skylift._protocol.web_request` packs it: its ASGI scope, and
the body when it is small. The app
runs on the container's event loop with `receive`/`send` bound to the gateway: the response goes
out with `container.web_send` (the start waits for the first body chunk so a plain response is one
message), and a body that did not fit in the input is pulled with `container.web_receive`.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .._context import current_input_id_var
from .._protocol import web_request
from ..exception import InvalidError
from . import eager
from .container_io import Caller
from .user_code import Service, Target

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]

RECEIVE_POLL_SECONDS = 50.0
MAX_FINAL_BATCH = 256
LIFESPAN_SECONDS = 60.0


class ClientDisconnected(OSError):
    """The HTTP client went away while the app was still answering (as uvicorn's)."""


def endpoints(definition: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    found: dict[str | None, dict[str, Any]] = {}
    if definition.get("web"):
        found[None] = dict(definition["web"])
    for name, meta in (definition.get("methods") or {}).items():
        if isinstance(meta, dict) and meta.get("web"):
            found[name] = dict(meta["web"])
    return found


def fastapi_app(fn: Callable[..., Any], method: str, docs: bool) -> Any:
    """Modal's `webhook_asgi_app`: one route at "/", CORS open to all."""
    try:
        from fastapi import FastAPI
        from fastapi.middleware.cors import CORSMiddleware
    except ImportError as exc:
        raise InvalidError(
            "@modal.fastapi_endpoint needs FastAPI in the image, as on Modal: "
            "image=modal.Image.debian_slim().pip_install(\"fastapi[standard]\")") from exc
    app = FastAPI(openapi_url="/openapi.json" if docs else None, docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True, allow_methods=["*"],
                       allow_headers=["*"])
    app.add_api_route("/", fn, methods=[method])
    return app


class Lifespan:
    """ASGI lifespan for one app, as uvicorn's `lifespan="auto"`: unsupported apps are fine."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.supported = True

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._events.put)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            self.supported = False
            await self._events.put({"type": "_ended", "error": exc})
            return
        await self._events.put({"type": "_ended", "error": None})

    async def _exchange(self, send: str) -> dict[str, Any]:
        await self._inbox.put({"type": send})
        return await asyncio.wait_for(self._events.get(), LIFESPAN_SECONDS)

    async def startup(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._main())
        event = await self._exchange("lifespan.startup")
        if event["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the ASGI app's lifespan startup failed: {event.get('message') or 'no message'}")
        if event["type"] == "_ended" and event.get("error") is not None:
            self.supported = False  # an app without lifespan support raises on the lifespan scope

    async def shutdown(self) -> None:
        if not self.supported or self._task is None or self._task.done():
            return
        try:
            await self._exchange("lifespan.shutdown")
        except (asyncio.TimeoutError, RuntimeError):
            pass


class FinalSender:
    """Complete responses of many inputs in one `container.web_send` (items).

    A response that ends in one message (the common case) rides with every other one that ended
    in the same turn of the event loop: under load the container sends one RPC for many requests.
    Its handler does not wait for that call at all: nothing it would learn from the answer matters
    after its last message, so it ends in the same step (its task is not woken once more through
    the app's whole await chain) and the request's slot is free at once. The batch is written by
    a callback queued by the first response of the turn, or earlier: the input loop's outputs go
    through `OrderedCaller`, which writes the pending batch before any `put_outputs`. The control
    plane reads one connection's requests in order, so an output never overtakes its response."""

    def __init__(self, rpc: Caller) -> None:
        self.rpc = rpc
        self._queue: list[dict[str, Any]] = []
        self._scheduled = False
        self._calls: set[asyncio.Task[Any]] = set()

    def send(self, input_id: str, messages: list[dict[str, Any]]) -> None:
        """Queue the messages (the last ones of a response) for this turn's batch."""
        self._add({"input_id": input_id, "messages": messages})

    def respond(self, input_id: str, status: Any, headers: list[list[bytes]], body: bytes) -> None:
        """Queue a whole response (start and body in one go, the common case), in the short form
        `r: [status, headers, body]` that costs both sides less than two ASGI messages."""
        self._add({"input_id": input_id, "r": [status, headers, body]})

    def _add(self, item: dict[str, Any]) -> None:
        self._queue.append(item)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)  # after every handler that runs in this turn

    def flush(self) -> None:
        """Write the pending batch now (before an output of one of its inputs goes out)."""
        if self._queue:
            self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        loop = asyncio.get_running_loop()
        for n in range(0, len(queue), MAX_FINAL_BATCH):
            # Started here, not as a task: the call writes its request before this returns.
            task = eager.start(loop, self._call(queue[n:n + MAX_FINAL_BATCH]))
            if task is not None:
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)

    async def _call(self, items: list[dict[str, Any]]) -> None:
        try:
            await self.rpc.call("container.web_send", {"items": items})
        except Exception as exc:  # the responses are lost (the control plane went away): say so in the logs
            sys.stderr.write(f"skylift: could not deliver {len(items)} web response(s): {exc!r}\n")
            sys.stderr.flush()

    async def wait(self) -> None:
        """Until every batch sent so far is answered (a container stopping waits for them)."""
        if self._scheduled:
            self._flush()
        while self._calls:
            await asyncio.gather(*list(self._calls), return_exceptions=True)


class OrderedCaller:
    """The input loop's connection in a container that serves web endpoints: a `put_outputs`
    first writes the web responses queued for the current batch, so that an input's output is
    never on the wire before its response (the control plane would answer 500, "the app returned
    without sending a response")."""

    def __init__(self, rpc: Caller, finals: FinalSender) -> None:
        self._rpc = rpc
        self._finals = finals

    def call(self, method: str, params: dict[str, Any] | None = None) -> Awaitable[Any]:
        if method == "container.put_outputs":
            self._finals.flush()
        return self._rpc.call(method, params)

    def __getattr__(self, name: str) -> Any:  # `connected`, and anything else the loop asks of it
        return getattr(self._rpc, name)


class Channel:
    """`receive` and `send` of one request, bound to the gateway by the input's id.

    Made for every request, so it holds little: the disconnect event and the inbox of a
    streamed body exist only once something needs them."""

    __slots__ = ("_gone_event", "body", "finals", "first", "gone", "inbox", "input_id", "more", "pending", "rpc",
                 "start", "websocket")

    def __init__(self, rpc: Caller, input_id: str, body: bytes, more: bool, websocket: bool,
                 finals: FinalSender | None = None) -> None:
        self.rpc = rpc
        self.finals = finals
        self.input_id = input_id
        self.websocket = websocket
        self.body = body or b""
        self.more = bool(more)
        self.first = True
        self.gone = False  # the client went away
        self._gone_event: asyncio.Event | None = None
        self.inbox: deque[dict[str, Any]] | None = None
        self.pending: list[dict[str, Any]] = []
        self.start: tuple[Any, list[list[bytes]]] | None = None  # a response start, held for its body

    def disconnect(self) -> None:
        self.gone = True
        if self._gone_event is not None:
            self._gone_event.set()

    async def receive(self) -> dict[str, Any]:
        if self.first:
            self.first = False
            if self.websocket:
                return {"type": "websocket.connect"}
            return {"type": "http.request", "body": self.body, "more_body": self.more}
        if self.websocket or self.more:
            message = await self._pull()
            if message["type"] == "http.request":
                self.more = bool(message.get("more_body"))
            return message
        # The body is all there: an app that listens on (Starlette's streaming responses do)
        # learns of the client going away.
        if not self.gone:
            if self._gone_event is None:
                self._gone_event = asyncio.Event()
            await self._gone_event.wait()
        return {"type": "http.disconnect"}

    async def _pull(self) -> dict[str, Any]:
        if self.inbox is None:
            self.inbox = deque()
        while not self.inbox:
            if self.gone:
                return {"type": "websocket.disconnect", "code": 1006} if self.websocket else {"type": "http.disconnect"}
            got = await self.rpc.call("container.web_receive", {"input_id": self.input_id,
                                                                 "timeout": RECEIVE_POLL_SECONDS})
            for message in got.get("messages") or []:
                if message.get("type") in ("http.disconnect", "websocket.disconnect"):
                    self.disconnect()
                self.inbox.append(message)
        return self.inbox.popleft()

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            raise ClientDisconnected("the web client disconnected")
        kind = message.get("type")
        if kind == "http.response.body":  # the common two first, without the general loop
            more = bool(message.get("more_body"))
            body = message.get("body", b"")
            if not more and self.start is not None and not self.pending and self.finals is not None:
                # A whole response in one go: it travels as [status, headers, body].
                status, headers = self.start
                self.start = None
                self.finals.respond(self.input_id, status, headers, body)
                return
            self._take_start()
            self.pending.append({"type": kind, "body": body, "more_body": more})
            await self.flush(final=not more)
            return
        if kind == "http.response.start":
            # It goes out with the first body chunk: a plain response is one message.
            self._take_start()
            self.start = (message.get("status"), [[bytes(k), bytes(v)] for k, v in message.get("headers") or ()])
            return
        self._take_start()
        wire: dict[str, Any] = {"type": kind}
        for key, value in message.items():
            if key == "headers":
                wire["headers"] = [[bytes(k), bytes(v)] for k, v in value]
            elif key in ("status", "body", "more_body", "subprotocol", "text", "bytes", "code", "reason"):
                wire[key] = value
        self.pending.append(wire)
        await self.flush()

    def _take_start(self) -> None:
        if self.start is not None:
            status, headers = self.start
            self.start = None
            self.pending.append({"type": "http.response.start", "status": status, "headers": headers})

    async def flush(self, final: bool = False) -> None:
        """Send what is pending. ASGI's `send` is awaited before the next one, so flushes never
        overlap; the pending list is taken before the first await all the same."""
        self._take_start()
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        if final and self.finals is not None:
            self.finals.send(self.input_id, batch)
            return
        reply = await self.rpc.call("container.web_send", {"input_id": self.input_id, "messages": batch})
        if reply.get("closed"):
            self.disconnect()


class WebRuntime:
    """The container's web endpoints: their apps, lifespans and input handlers."""

    def __init__(self, rpc: Caller) -> None:
        self.rpc = rpc
        self.finals = FinalSender(rpc)
        self.lifespans: list[Lifespan] = []

    def handler(self, app: ASGIApp, lifespan: Lifespan | None) -> Callable[[web_request.Request], Awaitable[None]]:
        async def handle(request: web_request.Request) -> None:
            scope, body, more = web_request.unpack(request)
            scope["state"] = dict(lifespan.state) if lifespan else {}
            channel = Channel(self.rpc, current_input_id_var.get() or "", body, more, scope["type"] == "websocket",
                              self.finals)
            try:
                await app(scope, channel.receive, channel.send)
            except ClientDisconnected:
                return
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError):
                    sys.stderr.write(f"Exception in web endpoint {scope.get('method', '')} {scope.get('path')}:\n"
                                     + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
                    sys.stderr.flush()
                raise
            finally:
                if (channel.pending or channel.start is not None) and not channel.gone:
                    await channel.flush()

        return handle

    def ordered(self, rpc: Caller) -> OrderedCaller:
        """`rpc` for the input loop: its outputs go out after the responses queued before them."""
        return OrderedCaller(rpc, self.finals)

    async def build(self, fn: Callable[..., Any], config: dict[str, Any]) -> tuple[ASGIApp, Lifespan | None]:
        kind = config.get("type")
        if kind == "function":
            return await self._with_lifespan(fastapi_app(fn, str(config.get("method", "GET")),
                                                         bool(config.get("docs"))))
        if kind == "asgi":
            app = fn()
            if inspect.isawaitable(app):
                app = await app
            if not callable(app):
                raise InvalidError(f"@modal.asgi_app: {getattr(fn, '__name__', fn)}() returned {app!r}, "
                                   "not an ASGI app")
            return await self._with_lifespan(app)
        if kind == "wsgi":
            from .wsgi import WsgiToAsgi

            app = fn()
            if not callable(app):
                raise InvalidError(f"@modal.wsgi_app: {getattr(fn, '__name__', fn)}() returned {app!r}, "
                                   "not a WSGI app")
            return WsgiToAsgi(app), None
        if kind == "web_server":
            from .web_proxy import ProxyApp, wait_for_port

            started = fn()
            if inspect.isawaitable(started):
                await started
            port = int(config["port"])
            await wait_for_port(port, float(config.get("startup_timeout") or 5.0))
            return ProxyApp(port), None
        raise InvalidError(f"unknown web endpoint type {kind!r}")

    async def _with_lifespan(self, app: ASGIApp) -> tuple[ASGIApp, Lifespan]:
        lifespan = Lifespan(app)
        await lifespan.startup()
        self.lifespans.append(lifespan)
        return app, lifespan

    async def shutdown(self) -> None:
        await self.finals.wait()
        for lifespan in self.lifespans:
            await lifespan.shutdown()


async def prepare(service: Service, rpc: Caller, definition: dict[str, Any]) -> WebRuntime | None:
    """Build the apps of a web function or class (after @enter) and route its inputs to them."""
    found = endpoints(definition)
    if not found:
        return None
    runtime = WebRuntime(rpc)
    for method, config in found.items():
        fn = service.function if method is None else getattr(service.instance, method)
        if fn is None:
            raise InvalidError(f"web endpoint {definition.get('tag')!r} has no function to serve")
        app, lifespan = await runtime.build(fn, config)
        service._targets[method] = Target(runtime.handler(app, lifespan), is_async=True, is_generator=False,
                                          web=True)
    return runtime
