"""A real control plane per test, driven over real connections.

Tests start `ControlPlane` in-process on a temp dir and talk to it with `RpcClient`s playing the
client, the worker agent and the containers: peers speaking the protocol, not a mock of the server.
Async test functions run on a fresh event loop each (no plugin needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from skylift._protocol import api
from skylift._protocol.rpc import RpcClient
from skylift.server import ControlPlane, Settings
from skylift.server.clock import FakeClock


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**kwargs))
        return True
    return None


FAST = Settings(scaler_interval=0.02, sweep_interval=0.02, stop_grace=5.0)


def definition(tag: str = "f", **overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "tag": tag, "module": "app_module", "qualname": tag, "serialized": None, "is_class": False, "methods": {},
        "is_generator": False, "image_id": "", "mounts": [], "resources": {}, "timeout": 300,
        "startup_timeout": None, "retries": None,
        "autoscaler": {"min_containers": 0, "max_containers": None, "buffer_containers": 0, "scaledown_window": 60},
        "concurrency": None, "batching": None, "single_use_containers": False, "schedule": None,
        "enable_memory_snapshot": False, "region": None, "cloud": None, "block_network": False,
        "secret_ids": [], "volume_ids": {}, "env": {}, "web": None, "experimental_options": {},
    }
    d.update(overrides)
    return d


class FakeWorker:
    """A worker agent that records the commands it gets instead of running containers."""

    def __init__(self, rpc: RpcClient, worker_id: str) -> None:
        self.rpc = rpc
        self.worker_id = worker_id
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            got = await self.rpc.call("worker.poll", {"timeout": 2.0})
            for command in got["commands"]:
                self.commands.put_nowait(command)

    async def next(self, op: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next command (of kind `op`, skipping others)."""
        async def wanted() -> dict[str, Any]:
            while True:
                command = await self.commands.get()
                if op is None or command["op"] == op:
                    return command

        return await asyncio.wait_for(wanted(), timeout)

    async def no_command(self, op: str, within: float = 0.3) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            command = await self.next(op, timeout=within)
            raise AssertionError(f"unexpected {op}: {command}")

    async def report(self, task_id: str, state: str, exit_code: int | None = None, message: str = "") -> None:
        event: dict[str, Any] = {"task_id": task_id, "state": state, "message": message}
        if exit_code is not None:
            event["exit_code"] = exit_code
        await self.rpc.call("worker.report", {"events": [event]})

    async def close(self) -> None:
        self._poller.cancel()
        with contextlib.suppress(BaseException):
            await self._poller
        await self.rpc.close()


class FakeContainer:
    """The runtime side of one container, step by step."""

    def __init__(self, rpc: RpcClient, spec: dict[str, Any]) -> None:
        self.rpc = rpc
        self.spec = spec
        self.task_id: str = spec["task_id"]

    async def init(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.rpc.call("container.init", {})
        return result

    async def start(self) -> dict[str, Any]:
        info = await self.init()
        await self.rpc.call("container.ready", {})
        return info

    async def get_inputs(self, max: int = 1, timeout: float = 5.0) -> dict[str, Any]:
        result: dict[str, Any] = await self.rpc.call("container.get_inputs", {"max": max, "timeout": timeout})
        return result

    async def next_inputs(self, max: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        got = await self.get_inputs(max, timeout)
        assert got["inputs"], f"expected inputs, got {got}"
        inputs: list[dict[str, Any]] = got["inputs"]
        return inputs

    async def put(self, inp: dict[str, Any], status: str = api.STATUS_SUCCESS, **fields: Any) -> None:
        out = {"input_id": inp["input_id"], "attempt": inp["attempt"], "status": status, **fields}
        await self.rpc.call("container.put_outputs", {"outputs": [out]})

    async def put_many(self, outputs: list[dict[str, Any]]) -> None:
        await self.rpc.call("container.put_outputs", {"outputs": outputs})

    async def heartbeat(self, running: list[str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.rpc.call("container.heartbeat", {"running_input_ids": running or []})
        return result

    async def serve(self, fn: Callable[[bytes], bytes], max: int = 10) -> None:
        """Answer inputs forever: output data = fn(args)."""
        while True:
            got = await self.get_inputs(max, timeout=2.0)
            if got["stop"]:
                return
            if got["inputs"]:
                await self.put_many([{"input_id": i["input_id"], "attempt": i["attempt"],
                                      "status": api.STATUS_SUCCESS, "data": fn(i["args"])} for i in got["inputs"]])

    async def close(self) -> None:
        await self.rpc.close()


WEB_ASGI = {"type": "asgi", "label": None, "requires_proxy_auth": False}


async def deployed_web_app(client: Any, name: str) -> str:
    """Deploy an app whose one function is an ASGI endpoint; its URL."""
    d = definition("web", web=WEB_ASGI)
    app_id = (await client.call("app.deploy_begin", {"name": name, "environment": "main"}))["app_id"]
    got = await client.call("function.create", {"app_id": app_id, "definition": d})
    await client.call("app.publish", {"app_id": app_id, "state": "deployed",
                                      "function_ids": {"web": got["function_id"]}})
    url: str = got["web_urls"][""]
    return url


class Harness:
    def __init__(self, cp: ControlPlane, clock: FakeClock | None) -> None:
        self.cp = cp
        self.clock = clock
        self._closing: list[Any] = []

    async def connect(self, role: str = api.ROLE_CLIENT, token: str | None = None, **hello: Any) -> RpcClient:
        rpc = await RpcClient.connect(self.cp.unix_url, {"token": self.cp.token if token is None else token,
                                                         "role": role, "version": "test", **hello})
        self._closing.append(rpc)
        return rpc

    async def client(self) -> RpcClient:
        return await self.connect()

    async def worker(self, *, cpu: float = 4, memory_mb: int = 8192, gpus: dict[str, int] | None = None,
                     worker_id: str | None = None) -> FakeWorker:
        rpc = await self.connect(api.ROLE_WORKER)
        params: dict[str, Any] = {"hostname": "test", "resources": {"cpu": cpu, "memory_mb": memory_mb,
                                                                    "gpus": gpus or {}},
                                  "labels": {}, "runtimes": ["process"]}
        if worker_id:
            params["worker_id"] = worker_id
        got = await rpc.call("worker.register", params)
        worker = FakeWorker(rpc, got["worker_id"])
        self._closing.append(worker)
        return worker

    async def container(self, spec: dict[str, Any]) -> FakeContainer:
        rpc = await self.connect(api.ROLE_CONTAINER, token=spec["token"], task_id=spec["task_id"])
        return FakeContainer(rpc, spec)

    async def started_container(self, worker: FakeWorker) -> FakeContainer:
        """Wait for the next start_task and bring that container up to ready."""
        command = await worker.next("start_task")
        await worker.report(command["task"]["task_id"], "running")
        container = await self.container(command["task"])
        await container.start()
        return container

    async def app(self, client: RpcClient, *defs: dict[str, Any], name: str = "test-app",
                  state: str = "detached") -> tuple[str, dict[str, str]]:
        """Create an app with functions and publish it; returns (app_id, {tag: function_id})."""
        if state == "deployed":
            app_id = (await client.call("app.deploy_begin", {"name": name, "environment": "main"}))["app_id"]
        else:
            app_id = (await client.call("app.create", {"name": name, "environment": "main", "state": state}))["app_id"]
        ids = {}
        for d in defs or (definition(),):
            ids[d["tag"]] = (await client.call("function.create", {"app_id": app_id, "definition": d}))["function_id"]
        await client.call("app.publish", {"app_id": app_id, "state": state, "function_ids": ids})
        return app_id, ids

    def advance(self, seconds: float) -> None:
        assert self.clock is not None, "start the harness with a FakeClock to move time"
        self.clock.advance(seconds)

    async def close(self) -> None:
        for thing in reversed(self._closing):
            with contextlib.suppress(Exception):
                await thing.close()


@pytest.fixture
def home() -> Any:
    # Short paths: a unix socket path must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="sl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def platform(home: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[Harness]]:
    """`async with platform() as h:` runs a control plane on `home` (again, for restarts)."""

    @contextlib.asynccontextmanager
    async def run(settings: Settings = FAST, fake_clock: bool = True) -> AsyncIterator[Harness]:
        clock = FakeClock() if fake_clock else None
        cp = ControlPlane(home, settings=settings, clock=clock)
        await cp.start()
        harness = Harness(cp, clock)
        try:
            yield harness
        finally:
            await harness.close()
            await cp.stop()

    return run
