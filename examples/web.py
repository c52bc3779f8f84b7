"""Web endpoints: `skylift serve examples/web.py` (reloads on save) or `skylift deploy examples/web.py`.

The same file runs on Modal with `import modal` instead of `import skylift as modal`.
"""

import skylift as modal

app = modal.App("example-web")
image = modal.Image.debian_slim().pip_install("fastapi[standard]")


@app.function(image=image)
@modal.fastapi_endpoint(method="GET", docs=True)
def hello(name: str = "world") -> dict:
    return {"hello": name}


@app.function(image=image)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def api():
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    web = FastAPI()

    @web.get("/count")
    async def count(n: int = 5):
        import asyncio

        async def numbers():
            for i in range(n):
                yield f"data: {i}\n\n"
                await asyncio.sleep(0.5)

        return StreamingResponse(numbers(), media_type="text/event-stream")

    return web


@app.function(schedule=modal.Period(minutes=10))
def cleanup():
    print("cleaning up (every 10 minutes once deployed)")
