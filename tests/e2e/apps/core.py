"""An app exercising the core API; imported by the tests and, in containers, by skylift."""

from __future__ import annotations

import asyncio
import os
import time

import skylift as modal

app = modal.App("e2e-core")


class CustomError(Exception):
    pass


class UnpicklableError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = __import__("threading").Lock()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("can't pickle this error")


@app.function()
def square(x: int) -> int:
    return x * x


@app.function()
def add(a: int, b: int = 0) -> int:
    return a + b


@app.function()
async def async_square(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * x


@app.function()
def fail(message: str) -> None:
    raise CustomError(message)


@app.function()
def fail_unpicklable() -> None:
    raise UnpicklableError("cannot travel")


@app.function()
def fail_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd {x}")
    return x


@app.function()
def gen(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        yield i * 10


@app.function()
async def agen(n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        await asyncio.sleep(0)
        yield f"item-{i}"


@app.function(timeout=1)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@app.function()
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


# Attempts are counted where every container (and the test) can see them, as on Modal: a container
# can't see the caller's files.
attempts = modal.Dict.from_name("e2e-core-attempts", create_if_missing=True)


@app.function(retries=modal.Retries(max_retries=3, initial_delay=0.1, backoff_coefficient=1.0))
def flaky(key: str, succeed_on: int) -> int:
    n = attempts.get(key, 0) + 1
    attempts[key] = n
    if n < succeed_on:
        raise RuntimeError(f"attempt {n} fails")
    return n


@app.function(max_containers=1)
@modal.concurrent(max_inputs=10)
def concurrent_sleep(seconds: float) -> str:
    time.sleep(seconds)
    return modal.current_input_id() or ""


@app.function()
@modal.batched(max_batch_size=4, wait_ms=200)
def batch_double(xs: list[int]) -> list[int]:
    return [x * 2 + len(xs) * 1000 for x in xs]


@app.function()
def where_am_i() -> dict[str, object]:
    return {"is_local": modal.is_local(), "input_id": modal.current_input_id(), "pid": os.getpid(),
            "cwd": os.getcwd()}


@app.function()
def call_square_inside(x: int) -> int:
    return square.remote(x) + 1


@app.function()
def echo(data: bytes) -> int:
    return len(data)


@app.cls()
class Counter:
    start: int = modal.parameter(default=0)
    label: str = modal.parameter(default="c")

    @modal.enter()
    def setup(self) -> None:
        self.value = self.start
        self.container = os.environ.get("MODAL_TASK_ID") or str(os.getpid())  # pids repeat across containers

    @modal.method()
    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    @modal.method()
    def info(self) -> tuple[str, str]:
        return self.label, self.container

    @modal.method()
    def countdown(self, n: int):  # type: ignore[no-untyped-def]
        yield from range(n, 0, -1)

    @modal.exit()
    def bye(self) -> None:
        print(f"exit hook of {self.label}")
