"""A minimal stand-in for the control plane's container methods, to drive the real runtime.

It answers only what one container calls (`container.init`, `ready`, `init_failed`,
`get_inputs`, `put_outputs`, `put_gen_items`, `heartbeat`) with the shapes of
`skylift._protocol.api`, and records what the container sent. The runtime under test is the real
`python -m skylift._runtime` subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle

import skylift._runtime
from skylift._protocol import api
from skylift._protocol.rpc import Address, RpcError
from skylift._protocol.rpc_server import RpcServer, Session

SRC = str(Path(skylift._runtime.__file__).resolve().parents[2])
TOKEN = "task-token"
TASK_ID = "ta-test"
ALL = frozenset({api.ROLE_CONTAINER})


def definition(obj: Any = None, **overrides: Any) -> dict[str, Any]:
    """A FunctionDefinition carrying `obj` cloudpickled (or naming a module via overrides)."""
    d: dict[str, Any] = {
        "tag": "f", "module": None, "qualname": getattr(obj, "__qualname__", "f"),
        "serialized": cloudpickle.dumps(obj) if obj is not None else None,
        "is_class": isinstance(obj, type), "methods": {}, "is_generator": False, "image_id": "im-test",
        "mounts": [], "resources": {}, "timeout": 300, "startup_timeout": None, "retries": None,
        "autoscaler": {}, "concurrency": None, "batching": None, "single_use_containers": False,
        "schedule": None, "enable_memory_snapshot": False, "region": None, "cloud": None,
        "block_network": False, "secret_ids": [], "volume_ids": {}, "env": {}, "web": None,
        "experimental_options": {},
    }
    d.update(overrides)
    return d


class Peer:
    def __init__(self, definition: dict[str, Any], params: bytes | None = None) -> None:
        self.definition = definition
        self.params = params
        self.pending: list[dict[str, Any]] = []
        self.new_input = asyncio.Event()
        self.outputs: dict[str, dict[str, Any]] = {}
        self.output_batches: list[int] = []
        self.gen_items: dict[str, list[bytes]] = {}
        self.got_output = asyncio.Event()
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.ready = asyncio.Event()
        self.init_failed: dict[str, Any] | None = None
        self.stop = False
        self.cancel_ids: list[str] = []
        self.heartbeats: list[list[str]] = []
        self._ids = itertools.count()
        self.process: asyncio.subprocess.Process | None = None
        self.output_text = b""
        handlers = {
            "container.init": (self._init, ALL),
            "container.ready": (self._ready, ALL),
            "container.init_failed": (self._init_failed, ALL),
            "container.get_inputs": (self._get_inputs, ALL),
            "container.put_outputs": (self._put_outputs, ALL),
            "container.put_gen_items": (self._put_gen_items, ALL),
            "container.heartbeat": (self._heartbeat, ALL),
        }
        self.server = RpcServer(self._authenticate, handlers)  # type: ignore[arg-type]

    # -- the container methods -------------------------------------------------------------

    async def _authenticate(self, session: Session, hello: dict[str, Any]) -> dict[str, Any]:
        if hello.get("token") != TOKEN or hello.get("role") != api.ROLE_CONTAINER or hello.get("task_id") != TASK_ID:
            raise RpcError("auth", f"bad hello {hello!r}")
        session.role = api.ROLE_CONTAINER
        session.identity = TASK_ID
        return {"server_version": "test", "server_id": "test"}

    def _record(self, method: str, params: dict[str, Any]) -> None:
        self.calls.append((time.monotonic(), method, params))

    async def _init(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self._record("container.init", params)
        return {"task_id": TASK_ID, "function_id": "fu-test", "app_id": "ap-test", "app_name": "test",
                "environment": "main", "definition": self.definition, "params": self.params, "function_ids": {}}

    async def _ready(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self._record("container.ready", params)
        self.ready.set()
        return {}

    async def _init_failed(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self._record("container.init_failed", params)
        self.init_failed = params
        self.got_output.set()
        return {}

    async def _get_inputs(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self._record("container.get_inputs", params)
        return await self._lease(params)

    async def _lease(self, params: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + params["timeout"]
        while not self.pending and not self.stop and time.monotonic() < deadline:
            self.new_input.clear()
            try:
                await asyncio.wait_for(self.new_input.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        taken, self.pending = self.pending[: params["max"]], self.pending[params["max"]:]
        return {"inputs": taken, "stop": self.stop and not self.pending}

    async def _put_outputs(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self._record("container.put_outputs", params)
        self.output_batches.append(len(params["outputs"]))
        for output in params["outputs"]:
            self.outputs[output["input_id"]] = output
        self.got_output.set()
        if params.get("next") is not None:  # the next poll rides on the outputs
            return await self._lease(params["next"])
        return {}

    async def _put_gen_items(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self._record("container.put_gen_items", params)
        items = self.gen_items.setdefault(params["input_id"], [])
        assert params["start"] == len(items), "generator items arrived out of order"
        items.extend(params["items"])
        return {}

    async def _heartbeat(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self.heartbeats.append(params["running_input_ids"])
        cancel, self.cancel_ids = self.cancel_ids, []
        return {"cancel_input_ids": cancel, "stop": self.stop}

    # -- driving it --------------------------------------------------------------------------

    def add_input(self, *args: Any, method: str | None = None, **kwargs: Any) -> str:
        n = next(self._ids)
        input_id = f"in-{n:04d}"
        item: dict[str, Any] = {"input_id": input_id, "call_id": "fc-test", "index": n, "attempt": 1,
                                "args": cloudpickle.dumps((args, kwargs)), "kind": "unary"}
        if method is not None:
            item["method"] = method
        self.pending.append(item)
        self.new_input.set()
        return input_id

    def request_stop(self) -> None:
        self.stop = True
        self.new_input.set()

    async def start(self, tmp_path: Path, **env: str) -> None:
        address = await self.server.listen(Address("unix", path=str(tmp_path / "cp.sock")))
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": SRC,
            "PYTHONUNBUFFERED": "1",
            api.ENV_SERVER_URL: str(address),
            api.ENV_TASK_ID: TASK_ID,
            api.ENV_TASK_TOKEN: TOKEN,
            **env,
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "skylift._runtime", env=full_env, cwd=str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.get_running_loop().create_task(self._read_output())

    async def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while chunk := await self.process.stdout.read(65536):
            self.output_text += chunk

    async def wait_outputs(self, input_ids: list[str], timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not all(i in self.outputs for i in input_ids):
            if self.process is not None and self.process.returncode is not None:
                break
            self.got_output.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.got_output.wait(), min(remaining, 0.5))
        missing = [i for i in input_ids if i not in self.outputs]
        assert not missing, f"no output for {missing}; container said:\n{await self.text()}"
        return [self.outputs[i] for i in input_ids]

    async def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"container did not exit; it said:\n{await self.text()}") from None
        await self._reader
        return code

    async def text(self) -> str:
        return self.output_text.decode(errors="replace")

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        if self.process is not None:
            await self._reader
        await self.server.close()
