"""A minimal stand-in for the control plane, to drive the real worker agent and its containers.

It answers the worker methods (`worker.register/poll/report/logs/image_progress`, `blob.get`)
and the container methods of `skylift._protocol.api`, recording everything. It holds no real
state machine: the test tells it which commands to hand out and which inputs to lease.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from pathlib import Path
from typing import Any

import cloudpickle

from skylift._protocol import api
from skylift._protocol.rpc import Address, RpcError
from skylift._protocol.rpc_server import RpcServer, Session

ADMIN_TOKEN = "admin-token"
WORKER = frozenset({api.ROLE_WORKER})
CONTAINER = frozenset({api.ROLE_CONTAINER})


async def wait_until(predicate: Any, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class ControlPlane:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.url = f"unix://{socket_path}"
        self.commands: list[dict[str, Any]] = []
        self.command_added = asyncio.Event()
        self.blobs: dict[str, bytes] = {}
        self.registrations: list[dict[str, Any]] = []
        self.hellos: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.progress: list[dict[str, Any]] = []
        self.tasks: dict[str, dict[str, Any]] = {}  # task id -> TaskSpec, for container.init
        self.inputs: dict[str, list[dict[str, Any]]] = {}  # task id -> inputs to lease
        self.outputs: dict[str, dict[str, Any]] = {}
        self.stop_tasks: set[str] = set()
        self._ids = itertools.count()
        self.server: RpcServer | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        handlers = {
            "worker.register": (self._register, WORKER),
            "worker.poll": (self._poll, WORKER),
            "worker.report": (self._report, WORKER),
            "worker.logs": (self._logs, WORKER),
            "worker.image_progress": (self._image_progress, WORKER),
            "blob.get": (self._blob_get, WORKER | CONTAINER),
            "container.init": (self._init, CONTAINER),
            "container.ready": (self._ok, CONTAINER),
            "container.init_failed": (self._ok, CONTAINER),
            "container.get_inputs": (self._get_inputs, CONTAINER),
            "container.put_outputs": (self._put_outputs, CONTAINER),
            "container.put_gen_items": (self._ok, CONTAINER),
            "container.heartbeat": (self._heartbeat, CONTAINER),
        }
        self.server = RpcServer(self._authenticate, handlers)  # type: ignore[arg-type]
        await self.server.listen(Address("unix", path=str(self.socket_path)))

    async def restart(self) -> None:
        """Drop every connection and listen again on the same socket, like a restarted control plane."""
        assert self.server is not None
        await self.server.close()
        await asyncio.sleep(0.2)
        await self.start()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    # -- what the test controls ---------------------------------------------------------------

    def add_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def command(self, command: dict[str, Any]) -> None:
        self.commands.append(command)
        self.command_added.set()

    def start_task(self, definition: dict[str, Any], image_id: str, mounts: list[dict[str, Any]] | None = None,
                   **extra: Any) -> str:
        task_id = f"ta-{next(self._ids):04d}"
        spec = {"task_id": task_id, "token": f"token-{task_id}", "app_id": "ap-test", "function_id": "fu-test",
                "function_tag": definition["tag"], "image_id": image_id, "server_url": self.url, "env": {},
                "resources": {"cpu": 0.125, "memory": 128, "gpu": None}, "mounts": mounts or [],
                "definition": definition, **extra}
        self.tasks[task_id] = spec
        self.inputs.setdefault(task_id, [])
        self.command({"op": "start_task", "task": spec})
        return task_id

    def add_input(self, task_id: str, *args: Any, **kwargs: Any) -> str:
        input_id = f"in-{next(self._ids):04d}"
        self.inputs[task_id].append({"input_id": input_id, "call_id": "fc-test", "index": 0, "attempt": 1,
                                     "args": cloudpickle.dumps((args, kwargs)), "kind": "unary"})
        return input_id

    def events_for(self, task_id: str) -> list[tuple[str, int | None]]:
        return [(e["state"], e.get("exit_code")) for e in self.events if e["task_id"] == task_id]

    def log_text(self, task_id: str, stream: str | None = None) -> list[str]:
        return [e["text"] for e in self.logs if e["task_id"] == task_id and (stream is None or e["stream"] == stream)]

    # -- handlers -----------------------------------------------------------------------------

    async def _authenticate(self, session: Session, hello: dict[str, Any]) -> dict[str, Any]:
        self.hellos.append(hello)
        role = hello.get("role")
        if role == api.ROLE_WORKER and hello.get("token") == ADMIN_TOKEN:
            session.role = role
        elif role == api.ROLE_CONTAINER and self.tasks.get(hello.get("task_id", ""), {}).get("token") == hello.get(
                "token"):
            session.role = role
            session.identity = hello["task_id"]
        else:
            raise RpcError("auth", "bad token")
        return {"server_version": "test", "server_id": "test"}

    async def _ok(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def _register(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self.registrations.append(params)
        return {"worker_id": params.get("worker_id") or "wo-test"}

    async def _poll(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + min(params["timeout"], 2.0)
        while not self.commands and time.monotonic() < deadline:
            self.command_added.clear()
            try:
                await asyncio.wait_for(self.command_added.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        commands, self.commands = self.commands, []
        return {"commands": commands}

    async def _report(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self.events.extend(params["events"])
        return {}

    async def _logs(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self.logs.extend(params["entries"])
        return {}

    async def _image_progress(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        self.progress.append(params)
        return {}

    async def _blob_get(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        if params["sha256"] not in self.blobs:
            raise RpcError("not_found", f"no blob {params['sha256']}")
        return {"data": self.blobs[params["sha256"]]}

    async def _init(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        spec = self.tasks[session.identity]
        return {"task_id": spec["task_id"], "function_id": "fu-test", "app_id": "ap-test", "app_name": "test",
                "environment": "main", "definition": spec["definition"], "params": None, "function_ids": {}}

    async def _get_inputs(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        task_id = session.identity
        deadline = time.monotonic() + min(params["timeout"], 1.0)
        while not self.inputs[task_id] and task_id not in self.stop_tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        taken = self.inputs[task_id][: params["max"]]
        del self.inputs[task_id][: len(taken)]
        return {"inputs": taken, "stop": task_id in self.stop_tasks}

    async def _put_outputs(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        for output in params["outputs"]:
            self.outputs[output["input_id"]] = output
        return {}

    async def _heartbeat(self, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        return {"cancel_input_ids": [], "stop": session.identity in self.stop_tasks}
