"""The web benchmark's endpoints (imported by bench/web.py, by bare uvicorn, and in containers).

The same two ASGI apps are served through skylift's gateway and by bare uvicorn: a raw ASGI app
(the floor: what the gateway itself costs) and a FastAPI app (what users typically serve).
"""

from __future__ import annotations

import json

import skylift as modal

app = modal.App("skylift-web-bench")
image = modal.Image.debian_slim().pip_install("fastapi")

BODY = json.dumps({"hello": "world"}).encode()


async def raw_app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def make_fastapi_app():  # type: ignore[no-untyped-def]
    from fastapi import FastAPI

    web = FastAPI()

    @web.get("/")
    async def root() -> dict[str, str]:
        return {"hello": "world"}

    return web


@app.function(min_containers=1, max_containers=1)
@modal.concurrent(max_inputs=256)
@modal.asgi_app()
def raw():  # type: ignore[no-untyped-def]
    return raw_app


@app.function(image=image, min_containers=1, max_containers=1)
@modal.concurrent(max_inputs=256)
@modal.asgi_app()
def fast():  # type: ignore[no-untyped-def]
    return make_fastapi_app()
