"""The `sandbox.*` methods: Modal's Sandboxes (docs/sandboxes.md).

    sandbox.create       start a container of the image whose runtime runs `cmd` (execution/sandboxes.py)
    sandbox.get / list / from_name / set_tags     the records
    sandbox.wait         long-poll a process's (or the sandbox's) result
    sandbox.read         long-poll a process's stdout/stderr from an offset
    sandbox.write_stdin  stdin at an offset (re-sends add nothing)
    sandbox.exec         a new process in the sandbox's container
    sandbox.terminate    kill it (result "terminated")
    sandbox.container_poll / put_output / process_exit       the sandbox's own container

A sandbox's container is a `Task` of a pool of its own, kept out of `Pools`: the scaler never
starts, scales or replaces it. `watch` (every `WATCH_INTERVAL`) ends sandboxes whose time is up,
whose app stopped or whose container is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..._protocol import ids
from ..._protocol.rpc import ErrorCode, RpcError
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..execution.catalog import AppEntry, FunctionEntry, validate_definition
from ..execution.images import FAILED
from ..execution.queues import Pool
from ..execution.sandboxes import (
    EXITED,
    RUNNING,
    TERMINATED,
    TIMEOUT,
    OffsetError,
    Process,
    Sandbox,
    Sandboxes,
)
from ..longpoll import Deadline
from ..params import Params, invalid, not_found
from ..policy import placement

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

log = logging.getLogger("skylift.server")

WATCH_INTERVAL = 0.2
PLACE_WAIT = 30.0  # seconds a create waits for a worker with room
MAX_SANDBOX_TIMEOUT = 24 * 3600
DEFAULT_SANDBOX_TIMEOUT = 300
STREAMS = ("stdout", "stderr")
MODES = ("pipe", "devnull")


def _tags(p: Params, name: str) -> dict[str, str]:
    tags = p.mapping(name, {}) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise invalid(p.method, f"field {name!r} must map strings to strings")
    return dict(tags)


class SandboxApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.sandboxes = Sandboxes()

    def routes(self) -> Routes:
        return {
            "sandbox.create": self.create,
            "sandbox.get": self.get,
            "sandbox.list": self.list_sandboxes,
            "sandbox.from_name": self.from_name,
            "sandbox.set_tags": self.set_tags,
            "sandbox.wait": self.wait,
            "sandbox.read": self.read,
            "sandbox.write_stdin": self.write_stdin,
            "sandbox.exec": self.exec,
            "sandbox.terminate": self.terminate,
            "sandbox.container_poll": self.container_poll,
            "sandbox.put_output": self.put_output,
            "sandbox.process_exit": self.process_exit,
        }

    # ---- create --------------------------------------------------------------------------------

    async def create(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.create", raw)
        # Inside a function's container `app=` may be left out, as in Modal: the container's own app.
        principal = getattr(session, "principal", None)
        app = await self.cp.catalog.app(p.opt_text("app_id") or getattr(principal, "app_id", "") or p.text("app_id"))
        if not app.running:
            raise invalid(p.method, f"{app.label} is stopped; create the sandbox in a running app "
                                    "(`with app.run():`, or modal.App.lookup(name, create_if_missing=True))")
        definition = dict(validate_definition(p.method, p.mapping("definition")))
        cmd = p.strings("cmd") if raw.get("cmd") is not None else []
        name = p.opt_text("name")
        self._unique(app, name)
        timeout = p.number("timeout", DEFAULT_SANDBOX_TIMEOUT)
        if not 1 <= timeout <= MAX_SANDBOX_TIMEOUT:
            raise invalid(p.method, f"timeout must be between 1 and {MAX_SANDBOX_TIMEOUT} seconds (24 h), "
                                    f"got {timeout}")
        idle = raw.get("idle_timeout")
        idle_timeout = p.number("idle_timeout") if idle is not None else None
        sandbox_id = ids.new_id("sandbox")
        definition.update({
            "tag": "sandbox", "module": None, "qualname": "", "serialized": None, "is_class": False,
            "methods": {}, "is_generator": False, "timeout": int(timeout), "retries": None, "autoscaler": None,
            "concurrency": None, "batching": None, "schedule": None, "web": None,
            "enable_memory_snapshot": False, "single_use_containers": True,
            "sandbox": {"sandbox_id": sandbox_id, "cmd": cmd, "workdir": p.opt_text("workdir")},
        })
        now = self.cp.clock.now()
        function = FunctionEntry(sandbox_id, app, "sandbox", definition, now)
        status, error = self.cp.images.readiness(function.image_id)
        if status == FAILED:
            raise invalid(p.method, f"the image {function.image_id} failed to build: {error}")
        decision = await self._place(function, sandbox_id)
        self._unique(app, name)  # again: another create may have taken the name while this one waited
        main = Process(sandbox_id, {"argv": cmd})
        sandbox = Sandbox(sandbox_id, app.app_id, app.environment, name, _tags(p, "tags"), now, time.time(),
                          float(timeout), idle_timeout, main, last_active=now)
        self.sandboxes.add(sandbox)
        self._launch(sandbox, Pool(function, None, lambda: None), decision)
        log.info("sandbox %s of %s started as container %s", sandbox_id, app.label,
                 sandbox.task.task_id if sandbox.task else "?")
        return {"sandbox_id": sandbox_id, "task_id": sandbox.task.task_id if sandbox.task else None}

    def _unique(self, app: AppEntry, name: str | None) -> None:
        if name is not None and self.sandboxes.named(app.app_id, name) is not None:
            raise RpcError(ErrorCode.CONFLICT, f"a running sandbox named {name!r} already exists in {app.label}; "
                                               "terminate it or choose another name")

    async def _place(self, function: FunctionEntry, sandbox_id: str) -> placement.Placed:
        """A worker with room, waiting up to `PLACE_WAIT` for one (a worker still registering, busy ones)."""
        deadline = Deadline(PLACE_WAIT)
        while True:
            workers = [w.view() for w in self.cp.workers.connected()]
            decision = placement.place(function.request, workers)
            if isinstance(decision, placement.Placed):
                return decision
            if (workers and decision.permanent) or deadline.remaining() <= 0:
                raise RpcError(ErrorCode.RESOURCE_EXHAUSTED, f"can't start sandbox {sandbox_id}: {decision.reason}")
            await asyncio.sleep(min(0.1, deadline.remaining()))

    def _launch(self, sandbox: Sandbox, pool: Pool, placed: placement.Placed) -> None:
        worker = self.cp.workers.get(placed.worker_id)
        assert worker is not None
        worker.reserve(placed)
        task, token = self.cp.tasks.create(pool, worker.worker_id, placed, self.cp.clock.now())
        task.reserved = True
        self.sandboxes.bind(sandbox, task)
        worker.send({"op": "start_task", "task": self.cp.scaler.task_spec(task, token, worker.server_url)})

    # ---- records ---------------------------------------------------------------------------------

    def _sandbox(self, p: Params) -> Sandbox:
        sandbox_id = p.text("sandbox_id")
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None:
            raise not_found(f"no sandbox {sandbox_id!r} (ended sandboxes are kept for an hour)")
        return sandbox

    def _process(self, p: Params, sandbox: Sandbox) -> Process:
        process_id = p.opt_text("process_id")
        proc = sandbox.process(process_id)
        if proc is None:
            raise not_found(f"no process {process_id!r} in sandbox {sandbox.sandbox_id}")
        return proc

    async def get(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        return self._sandbox(Params("sandbox.get", raw)).info()

    async def list_sandboxes(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.list", raw)
        environment = p.environment()
        principal = getattr(session, "principal", None)
        # A container lists its own app's sandboxes unless it names an app it created (access.RULES).
        app_id = p.opt_text("app_id") or getattr(principal, "app_id", None)
        tags = _tags(p, "tags")
        found = [s for s in self.sandboxes.live() if s.environment == environment
                 and (not app_id or s.app_id == app_id)
                 and all(s.tags.get(k) == v for k, v in tags.items())]
        found.sort(key=lambda s: s.created_at, reverse=True)  # newest first, as Modal's
        return {"sandboxes": [s.info() for s in found]}

    async def from_name(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.from_name", raw)
        app_name, name = p.text("app_name"), p.text("name")
        app = self.cp.catalog.find_running(app_name, p.environment())
        sandbox = self.sandboxes.named(app.app_id, name) if app is not None else None
        if sandbox is None:
            raise not_found(f"no running sandbox named {name!r} in app {app_name!r}")
        return sandbox.info()

    async def set_tags(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.set_tags", raw)
        sandbox = self._sandbox(p)
        sandbox.tags = _tags(p, "tags")
        return {}

    # ---- processes -------------------------------------------------------------------------------

    async def wait(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.wait", raw)
        proc = self._process(p, self._sandbox(p))
        deadline = Deadline(p.timeout())
        while proc.status == RUNNING and deadline.remaining() > 0:
            await proc.done.wait(deadline.remaining())
        return {"status": proc.status, "returncode": proc.returncode}

    async def read(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.read", raw)
        sandbox = self._sandbox(p)
        out = self._process(p, sandbox).output(p.choice("stream", STREAMS, "stdout"))
        offset = p.integer("offset", 0, minimum=0)
        deadline = Deadline(p.timeout())
        while True:
            start, chunk = out.read(offset)
            end = start + len(chunk)
            if chunk or out.eof or deadline.remaining() <= 0:
                return {"data": chunk, "offset": start, "next_offset": end, "eof": out.eof and end >= out.end}
            await out.signal.wait(deadline.remaining())

    async def write_stdin(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.write_stdin", raw)
        sandbox = self._sandbox(p)
        proc = self._process(p, sandbox)
        offset = p.integer("offset", minimum=0)
        data, eof = p.blob("data", b""), p.flag("eof")
        deadline = Deadline(p.timeout(default=30.0))
        sandbox.last_active = self.cp.clock.now()
        while proc.status == RUNNING:
            try:
                if proc.stdin.write(offset, data, eof):
                    sandbox.wake.notify()
                    break
            except OffsetError as exc:
                raise invalid(p.method, str(exc)) from None
            if deadline.remaining() <= 0:
                raise RpcError(ErrorCode.RESOURCE_EXHAUSTED, f"the stdin of {proc.process_id} is full: the process "
                                                             "is not reading it; write again later")
            await proc.stdin.signal.wait(deadline.remaining())
        return {"next_offset": proc.stdin.end}

    async def exec(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.exec", raw)
        sandbox = self._sandbox(p)
        if not sandbox.alive:
            raise invalid(p.method, f"sandbox {sandbox.sandbox_id} has finished ({sandbox.main.status}); "
                                    "exec runs only in a running sandbox")
        argv = p.strings("argv")
        if not argv:
            raise invalid(p.method, "field 'argv' must be a non-empty list of strings (the command)")
        env = {str(k): str(v) for k, v in (p.mapping("env", {}) or {}).items()}
        secret_ids = p.strings("secret_ids") if raw.get("secret_ids") else []
        if secret_ids:
            attached = self.cp.storage.attachments({"secret_ids": secret_ids})
            if attached.missing_secrets:
                raise not_found(f"secret(s) {', '.join(attached.missing_secrets)} no longer exist")
            env = {**attached.env, **env}
        timeout = raw.get("timeout")
        spec = {"argv": argv, "workdir": p.opt_text("workdir"), "env": env,
                "timeout": p.number("timeout") if timeout is not None else None,
                "stdout": p.choice("stdout", MODES, "pipe"), "stderr": p.choice("stderr", MODES, "pipe")}
        proc = Process(ids.new_id("process"), spec)
        sandbox.execs[proc.process_id] = proc
        sandbox.last_active = self.cp.clock.now()
        sandbox.wake.notify()
        return {"process_id": proc.process_id}

    async def terminate(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        sandbox = self._sandbox(Params("sandbox.terminate", raw))
        self._end(sandbox, TERMINATED, None, "terminated by Sandbox.terminate()")
        return {"status": sandbox.main.status, "returncode": sandbox.main.returncode}

    def _end(self, sandbox: Sandbox, status: str, returncode: int | None, reason: str) -> None:
        if not sandbox.alive:
            return
        now = self.cp.clock.now()
        sandbox.end(status, returncode, now)
        self.sandboxes.ended(sandbox, now)
        task = sandbox.task
        if task is not None and task.alive and status != EXITED:
            self.cp.dispatcher.kill_task(task, f"sandbox {sandbox.sandbox_id} {reason}")

    # ---- its container ---------------------------------------------------------------------------

    def _own(self, session: Session, method: str) -> Sandbox:
        sandbox = self.sandboxes.of_task(session.identity or "")
        if sandbox is None:
            raise invalid(method, "this container runs no live sandbox")
        self.sandboxes_seen(sandbox)
        return sandbox

    def sandboxes_seen(self, sandbox: Sandbox) -> None:
        if sandbox.task is not None:
            sandbox.task.last_seen = self.cp.clock.now()

    async def container_poll(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.container_poll", raw)
        sandbox = self._own(session, p.method)
        acks = p.mapping("acks", {}) or {}
        deadline = Deadline(p.timeout())
        while True:
            stdin: list[dict[str, Any]] = []
            for process_id, offset in acks.items():
                proc = sandbox.process(str(process_id))
                if proc is None or not isinstance(offset, int):
                    continue
                proc.stdin.ack(offset)
                pending = proc.stdin.pending(offset)
                if pending is not None:
                    start, chunk, eof = pending
                    stdin.append({"process_id": proc.process_id, "offset": start, "data": chunk, "eof": eof})
            execs = []
            for proc in sandbox.execs.values():
                if not proc.sent and proc.status == RUNNING:
                    proc.sent = True
                    execs.append({"process_id": proc.process_id, **proc.spec})
            if stdin or execs or sandbox.stop or deadline.remaining() <= 0:
                return {"stdin": stdin, "execs": execs, "stop": sandbox.stop}
            await sandbox.wake.wait(deadline.remaining())

    async def put_output(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.put_output", raw)
        sandbox = self._own(session, p.method)
        proc = self._process(p, sandbox)
        out = proc.output(p.choice("stream", STREAMS))
        offset, data, eof = p.integer("offset", minimum=0), p.blob("data", b""), p.flag("eof")
        deadline = Deadline(p.timeout())
        sandbox.last_active = self.cp.clock.now()
        while True:
            try:
                if out.put(offset, data, eof):
                    return {"accepted": True}
            except OffsetError as exc:
                raise invalid(p.method, str(exc)) from None
            if deadline.remaining() <= 0:
                return {"accepted": False}  # nobody reads it: send it again (the pipe waits meanwhile)
            await out.signal.wait(deadline.remaining())

    async def process_exit(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("sandbox.process_exit", raw)
        sandbox = self._own(session, p.method)
        proc = self._process(p, sandbox)
        code = p.integer("exit_code")
        status = TIMEOUT if p.flag("timed_out") else EXITED
        sandbox.last_active = self.cp.clock.now()
        if proc is sandbox.main:
            self._end(sandbox, EXITED, code, f"exited with code {code}")
        else:
            proc.finish(status, code)
        return {}

    # ---- time ------------------------------------------------------------------------------------

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                self.sweep()
            except Exception:
                log.exception("sandbox sweep failed; continuing")

    def sweep(self) -> None:
        now = self.cp.clock.now()
        for sandbox in self.sandboxes.live():
            task = sandbox.task
            app = self.cp.catalog.apps.get(sandbox.app_id)
            if app is None or not app.running:
                self._end(sandbox, TERMINATED, None, "ended with its app")
            elif task is None or not task.alive:
                code = task.exit_code if task is not None else None
                self._end(sandbox, TERMINATED, None, f"lost its container (exit code {code})")
            elif now - sandbox.created_at > sandbox.timeout:
                self._end(sandbox, TIMEOUT, None, f"timed out after {sandbox.timeout:g}s")
            elif sandbox.idle_timeout is not None and now - sandbox.last_active > sandbox.idle_timeout and \
                    not any(p.status == RUNNING for p in sandbox.execs.values()):
                self._end(sandbox, TIMEOUT, None, f"was idle for {sandbox.idle_timeout:g}s (idle_timeout)")
