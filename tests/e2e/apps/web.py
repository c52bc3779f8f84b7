"""Web endpoints used by tests/e2e/test_web.py (imported in containers too: no pytest here)."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

import skylift as modal

app = modal.App("e2e-web")

# FastAPI (and Flask) must be in the image, as on Modal; uv installs them from its cache quickly.
image = modal.Image.debian_slim().pip_install("fastapi", "flask")


@app.function(image=image)
@modal.fastapi_endpoint(method="GET")
def hello(name: str = "world") -> dict[str, str]:
    return {"hello": name}


class Item(BaseModel):
    name: str
    price: float
    quantity: int = 1


@app.function(image=image)
@modal.fastapi_endpoint(method="POST", docs=True, label="e2e-items")
def create_item(item: Item) -> dict[str, object]:
    return {"name": item.name, "total": item.price * item.quantity}


@app.function(image=image)
@modal.fastapi_endpoint(method="GET")
def boom() -> None:
    raise ValueError("kaboom in the endpoint")


@app.function(image=image)
@modal.fastapi_endpoint(requires_proxy_auth=True)
def secret() -> str:
    return "only with a proxy token"


@app.function(image=image)
@modal.fastapi_endpoint(method="GET")
def slow(seconds: float = 2.0) -> str:
    time.sleep(seconds)
    return "finally"


def _starlette_app() -> FastAPI:
    web = FastAPI()

    @web.get("/")
    def root() -> dict[str, str]:
        return {"app": "asgi"}

    @web.get("/events")
    async def events(n: int = 3) -> StreamingResponse:
        async def gen():  # type: ignore[no-untyped-def]
            for i in range(n):
                yield f"data: {i}\n\n"
                await asyncio.sleep(0.2)

        return StreamingResponse(gen(), media_type="text/event-stream")

    @web.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        total = 0
        chunks = 0
        async for chunk in request.stream():
            total += len(chunk)
            chunks += 1
        return {"bytes": total, "chunks": chunks}

    @web.get("/pid")
    def pid() -> dict[str, int]:
        return {"pid": os.getpid()}

    @web.post("/echo/{token}")
    async def echo(token: str, request: Request) -> dict[str, object]:
        body = await request.body()
        await asyncio.sleep(0.01)  # so that requests overlap in the container
        return {"token": token, "bytes": len(body), "pid": os.getpid()}

    @web.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        while True:
            text = await socket.receive_text()
            if text == "bye":
                await socket.close()
                return
            await socket.send_text(f"echo: {text}")

    return web


@app.function(image=image)
@modal.concurrent(max_inputs=20)
@modal.asgi_app()
def api():  # type: ignore[no-untyped-def]
    return _starlette_app()


@app.function(image=image)
@modal.wsgi_app()
def flask_app():  # type: ignore[no-untyped-def]
    from flask import Flask, request

    web = Flask(__name__)

    @web.route("/")
    def index() -> str:
        return "hello from flask"

    @web.route("/echo", methods=["POST"])
    def echo() -> dict[str, object]:
        return {"got": request.get_json(), "path": request.path}

    return web


@app.function(image=image)
@modal.web_server(48217, startup_timeout=10)
def file_server() -> None:
    import subprocess

    os.makedirs("/tmp/e2e-web-root", exist_ok=True)
    with open("/tmp/e2e-web-root/hello.txt", "w") as f:
        f.write("served by http.server")
    subprocess.Popen([sys.executable, "-m", "http.server", "48217", "--bind", "127.0.0.1",
                      "--directory", "/tmp/e2e-web-root"])


@app.function(image=image)
@modal.asgi_app()
def broken_startup():  # type: ignore[no-untyped-def]
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):  # type: ignore[no-untyped-def]
        raise RuntimeError("database unreachable")
        yield

    return FastAPI(lifespan=lifespan)


@app.cls(image=image)
class Greeter:
    @modal.enter()
    def setup(self) -> None:
        self.greeting = "hi"

    @modal.fastapi_endpoint(method="GET")
    def greet(self, name: str = "there") -> str:
        return f"{self.greeting} {name}"

    @modal.method()
    def plain(self) -> str:
        return "plain"
