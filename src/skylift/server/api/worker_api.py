"""The `worker.*` methods: registration, the command long-poll, and task reports.

Logs (`worker.logs`) and image progress (`worker.image_progress`) are served by `logs.py` and
`images.py`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..._protocol.rpc import ErrorCode, RpcError
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..execution.tasks import TaskState
from ..execution.workers import Worker
from ..longpoll import Deadline
from ..params import Params, invalid
from ..policy.faults import CAUSE_WORKER_LOST

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

log = logging.getLogger("skylift.server")


class WorkerApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def routes(self) -> Routes:
        return {
            "worker.register": self.register,
            "worker.poll": self.poll,
            "worker.report": self.report,
        }

    def _worker(self, session: Session) -> Worker:
        worker = self.cp.workers.get(session.identity) if session.identity else None
        if worker is None:
            raise RpcError(ErrorCode.INVALID, "call worker.register first")
        return worker

    def on_disconnect(self, session: Session) -> None:
        worker = session.info.get("worker")
        if isinstance(worker, Worker) and worker.session is session:  # not replaced by a reconnect
            worker.connected = False
            worker.disconnected_at = self.cp.clock.now()
            self.cp.images.on_worker_change()

    async def register(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("worker.register", raw)
        resources = p.mapping("resources", {})
        for name in ("cpu", "memory_mb"):
            value = resources.get(name)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise invalid("worker.register", f"resources.{name} must be a positive number")
        gpus = resources.get("gpus") or {}
        if not isinstance(gpus, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in gpus.items()):
            raise invalid("worker.register", "resources.gpus must map GPU type names to counts")
        labels = {str(k): str(v) for k, v in p.mapping("labels", {}).items()}
        # A worker on this machine reaches us (and its containers do) through the unix socket.
        url = self.cp.unix_url if session.peer == "unix" else self.cp.url
        worker = self.cp.workers.register(
            p.opt_text("worker_id"), hostname=p.text("hostname", ""), resources=resources, labels=labels,
            runtimes=p.strings("runtimes") if raw.get("runtimes") is not None else [], server_url=url,
            now=self.cp.clock.now())
        session.identity = worker.worker_id
        session.info["worker"] = worker
        worker.session = session
        for task in self.cp.tasks.of_worker(worker.worker_id):  # containers from before our restart
            if task.alive and not task.reserved:
                worker.reserve(task.placed)
                task.reserved = True
        if raw.get("task_ids") is not None:  # what it runs now: the others of ours are gone with it
            self._write_off_missing(worker, set(p.strings("task_ids")))
        self.cp.images.on_worker_change()
        self.cp.scaler.wake()
        return {"worker_id": worker.worker_id}

    def _write_off_missing(self, worker: Worker, running: set[str]) -> None:
        queued = {c["task"]["task_id"] for c in worker.commands if c.get("op") == "start_task"}
        for task in self.cp.tasks.of_worker(worker.worker_id):
            if task.alive and task.task_id not in running and task.task_id not in queued:
                self.cp.dispatcher.task_exited(task, None, f"its worker {worker.worker_id} came back without it",
                                               cause=CAUSE_WORKER_LOST)

    def lose(self, worker: Worker, reason: str) -> None:
        """Write off a worker that is gone (its process exited, or it didn't come back): its containers
        exited (INFRA, not charged to retries or crash limits) and their inputs run elsewhere now."""
        tasks = [t for t in self.cp.tasks.of_worker(worker.worker_id) if t.alive]
        if tasks:
            log.warning("writing off %d container(s) of worker %s: %s", len(tasks), worker.worker_id, reason)
        for task in tasks:
            self.cp.dispatcher.task_exited(task, None, reason, cause=CAUSE_WORKER_LOST)
        self.cp.workers.remove(worker)
        self.cp.images.on_worker_change()
        self.cp.scaler.wake()

    def lose_by_id(self, worker_id: str, reason: str) -> None:
        worker = self.cp.workers.get(worker_id)
        if worker is not None:
            self.lose(worker, reason)

    async def poll(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("worker.poll", raw)
        deadline = Deadline(p.timeout())
        worker = self._worker(session)
        while not worker.commands and deadline.remaining() > 0:
            await worker.signal.wait(deadline.remaining())
        return {"commands": worker.take_commands()}

    async def report(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("worker.report", raw)
        worker = self._worker(session)
        for n, event in enumerate(p.items("events")):
            if not isinstance(event, dict) or not isinstance(event.get("task_id"), str):
                raise invalid("worker.report", f"events[{n}] must be a TaskEvent {{task_id, state, ...}}")
            state = event.get("state")
            task = self.cp.tasks.get(event["task_id"])
            if task is None:
                if state == "running":  # a container we don't know (from before a restart)
                    worker.send({"op": "stop_task", "task_id": event["task_id"], "kill": True})
                continue
            if state == "running":
                task.advance(TaskState.RUNNING)
                if event.get("profile"):
                    task.profile.on_worker(event["profile"])
                    self.cp.task_api.profile_progress(task)
            elif state == "exited":
                code = event.get("exit_code")
                message = event.get("message")
                cause = event.get("cause")
                signal_number = event.get("signal")
                self.cp.dispatcher.task_exited(task, code if isinstance(code, int) else None,
                                               message if isinstance(message, str) else "",
                                               cause=cause if isinstance(cause, str) else "",
                                               signal_number=signal_number if isinstance(signal_number, int) else None)
                self.cp.logs.task_exited(task.pool.function.app.app_id)  # its lines came first: the end may be here
            else:
                raise invalid("worker.report", f"events[{n}].state must be 'running' or 'exited', got {state!r}")
        return {}
