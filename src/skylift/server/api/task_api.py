"""The `task.*` methods: containers as a person sees them (`skylift container list|logs|exec|stop|profile`).

    task.list   live containers, with their pool, state, inputs, how they started and their cold start
    task.get    one container, with its whole cold-start profile (`profiles.ColdStart`)
    task.logs   one container's lines of its app's log, long-polled like `app.logs`
    task.exec   run a command in a container: relayed to its worker (`exec_task`), answered by
                `worker.exec_result`
    task.stop   drain and stop a container (or kill it); the autoscaler replaces it if it must

It also writes each container's "cold start" log line once its profile is complete.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..._protocol import ids
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..execution.tasks import Task
from ..longpoll import Deadline
from ..params import Params, invalid, not_found

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

LOG_PAGE = 1000
LOG_PAGES_PER_CALL = 20  # a long log is scanned in slices; the answer's next_seq says where to go on
EXEC_GRACE = 15.0  # beyond the command's own timeout, for the worker to answer


class TaskApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._execs: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.exec_workers: dict[str, str] = {}  # exec id -> the worker it was sent to (server/access.py)

    def routes(self) -> Routes:
        return {
            "task.list": self.list_tasks,
            "task.get": self.get,
            "task.logs": self.logs,
            "task.exec": self.exec,
            "task.stop": self.stop,
            "worker.exec_result": self.exec_result,
        }

    # ---- cold-start lines ---------------------------------------------------------------------

    def profile_progress(self, task: Task) -> None:
        """Log the container's cold start once every party has reported its part."""
        profile = task.profile
        if profile.logged or not profile.complete:
            return
        profile.logged = True
        function = task.pool.function
        self.cp.logs.system(function.app.app_id, task.task_id, function.tag, profile.line())

    # ---- views ----------------------------------------------------------------------------------

    def info(self, task: Task) -> dict[str, Any]:
        now = self.cp.clock.now()
        function = task.pool.function
        profile = task.profile
        total = profile.total_ms() if profile.ready_at is not None else None
        idle = None
        if task.ever_ready and not task.leased and task.alive:
            idle = round(max(0.0, now - task.idle_since), 3)
        return {
            "task_id": task.task_id, "app_id": function.app.app_id, "app_name": function.app.name or "",
            "function_tag": function.tag, "state": task.state.value, "worker_id": task.worker_id,
            "uptime": round(max(0.0, now - task.created_at), 3), "idle": idle,
            "running_inputs": len(task.leased), "served": task.served,
            "start": "fork" if profile.forked else (profile.worker.get("how") or ""),
            "pid": profile.worker.get("pid"), "cold_start_ms": None if total is None else round(total, 3),
            "stop_reason": task.stop_reason if task.stop_requested else "",
        }

    def _task(self, method: str, task_id: str) -> Task:
        task = self.cp.tasks.get(task_id)
        if task is None or not task.alive:
            raise not_found(f"no running container {task_id!r}; `skylift container list` shows the running ones")
        return task

    async def list_tasks(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("task.list", raw)
        environment = p.environment()
        app_id = p.opt_text("app_id")
        tasks = [t for t in self.cp.tasks.all()
                 if t.alive and t.pool.function.app.environment == environment
                 and (not app_id or t.pool.function.app.app_id == app_id)]
        tasks.sort(key=lambda t: t.created_at)
        return {"tasks": [self.info(t) for t in tasks]}

    async def get(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("task.get", raw)
        task = self._task("task.get", p.text("task_id"))
        return {"task": {**self.info(task), "profile": task.profile.wire()}}

    # ---- logs -------------------------------------------------------------------------------------

    async def logs(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("task.logs", raw)
        task_id = p.text("task_id")
        after = p.integer("after_seq", 0, minimum=0)
        limit = min(p.integer("limit", LOG_PAGE, minimum=1), 10_000)
        deadline = Deadline(p.timeout())
        origin = self.cp.tasks.origin(task_id)
        if origin is None:
            raise not_found(f"no container {task_id!r} (or it ended long ago); `skylift container list` shows "
                            "the running ones, `skylift app logs` every log of an app")
        while True:
            version = self.cp.logs.version(origin.app_id)
            entries, next_seq = await self._scan(origin.app_id, task_id, after, limit)
            task = self.cp.tasks.get(task_id)
            done = task is None or not task.alive
            if entries or done or deadline.remaining() <= 0:
                break
            after = next_seq
            await self.cp.logs.wait_after(origin.app_id, version, deadline.remaining())
        return {"entries": entries, "next_seq": next_seq, "done": done}

    async def _scan(self, app_id: str, task_id: str, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        store = self.cp.db.store
        found: list[dict[str, Any]] = []
        for _ in range(LOG_PAGES_PER_CALL):
            rows = await self.cp.db.run(store.read_logs, app_id, after, LOG_PAGE)
            for row in rows:
                after = row.seq
                if row.task_id == task_id:
                    found.append({"seq": row.seq, "ts": row.ts, "task_id": row.task_id,
                                  "function_tag": row.function_tag, "stream": row.stream, "text": row.text})
                    if len(found) >= limit:
                        return found, after
            if len(rows) < LOG_PAGE:
                break
        return found, after

    # ---- exec and stop ----------------------------------------------------------------------------

    async def exec(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("task.exec", raw)
        task = self._task("task.exec", p.text("task_id"))
        argv = p.strings("argv")
        if not argv:
            raise invalid("task.exec", "field 'argv' must be a non-empty list of strings (the command)")
        timeout = p.number("timeout", 60.0)
        if timeout <= 0:
            raise invalid("task.exec", "field 'timeout' must be positive")
        worker = self.cp.workers.get(task.worker_id)
        if worker is None or not worker.connected:
            raise invalid("task.exec", f"the worker of container {task.task_id} is not connected")
        exec_id = ids.new_id("task").replace("ta-", "ex-", 1)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._execs[exec_id] = future
        self.exec_workers[exec_id] = worker.worker_id
        worker.send({"op": "exec_task", "exec_id": exec_id, "task_id": task.task_id, "argv": argv,
                     "timeout": timeout})
        try:
            result = await asyncio.wait_for(future, timeout + EXEC_GRACE)
        except asyncio.TimeoutError:
            raise invalid("task.exec", f"the worker did not answer within {timeout + EXEC_GRACE:.0f} s") from None
        finally:
            self._execs.pop(exec_id, None)
            self.exec_workers.pop(exec_id, None)
        if result.get("error"):
            raise invalid("task.exec", str(result["error"]))
        return {"exit_code": int(result.get("exit_code", -1)), "output": str(result.get("output", "")),
                "truncated": bool(result.get("truncated"))}

    async def exec_result(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("worker.exec_result", raw)
        future = self._execs.get(p.text("exec_id"))
        if future is not None and not future.done():
            future.set_result(dict(raw))
        return {}

    async def stop(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("task.stop", raw)
        task = self._task("task.stop", p.text("task_id"))
        if p.flag("kill"):
            self.cp.dispatcher.kill_task(task, "killed by `skylift container stop --kill`")
        else:
            self.cp.dispatcher.stop_task(task, "stopped by `skylift container stop`")
        return {}
