"""Run a WSGI app (Flask, Django, ...) as an ASGI app, for `@modal.wsgi_app` (Modal uses a2wsgi).

Each request runs the WSGI callable in a thread of the loop's default executor, as WSGI apps
block. The request body is read in full first (WSGI's `wsgi.input` is a blocking file); the
response streams: every chunk the app yields is sent as it comes, so a generator response (e.g.
Flask's `stream_with_context`) reaches the client incrementally.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def build_environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    root_path = scope.get("root_path", "")
    path = scope["path"]
    if root_path and path.startswith(root_path):
        path = path[len(root_path):] or "/"
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root_path.encode("utf-8").decode("latin-1"),
        # PEP 3333: native strings holding the bytes as latin-1.
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": bytes(scope.get("query_string") or b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in scope.get("headers") or []:
        key = bytes(name).decode("latin-1").upper().replace("-", "_")
        text = bytes(value).decode("latin-1")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = text
        elif key == "CONTENT_LENGTH":
            continue
        else:
            key = f"HTTP_{key}"
            environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


class WsgiToAsgi:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before the body arrived
            body += message.get("body") or b""
            if not message.get("more_body"):
                break
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, bytes(body))
        await loop.run_in_executor(None, self._run, environ, send, loop)

    def _run(self, environ: dict[str, Any], send: Send, loop: asyncio.AbstractEventLoop) -> None:
        started: list[tuple[int, list[tuple[bytes, bytes]]]] = []
        sent_start = False

        def emit(message: dict[str, Any]) -> None:
            asyncio.run_coroutine_threadsafe(_await(send(message)), loop).result()

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and sent_start:
                raise exc_info[1].with_traceback(exc_info[2])
            code = int(status.split(" ", 1)[0])
            started[:] = [(code, [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers])]
            return write

        # With a Content-Length the chunk that completes it is the last message, so a plain response
        # is one message; without one, chunks stream as they come.
        remaining: list[int | None] = [None]
        done = False

        def write(data: bytes) -> None:
            nonlocal sent_start, done
            if not sent_start:
                status, headers = started[0]
                emit({"type": "http.response.start", "status": status, "headers": headers})
                sent_start = True
                length = dict(headers).get(b"content-length")
                remaining[0] = int(length) if length is not None and length.isdigit() else None
            if done or not data:
                return
            left = remaining[0]
            if left is not None:
                left = remaining[0] = left - len(data)
            done = left is not None and left <= 0
            emit({"type": "http.response.body", "body": bytes(data), "more_body": not done})

        result = self.app(environ, start_response)
        try:
            for chunk in result:
                write(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not sent_start:
            write(b"")
        if not done:
            emit({"type": "http.response.body", "body": b"", "more_body": False})


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable
