"""The `container.*` methods: what a running container asks of the control plane.

A container fetches its definition (`init`), reports `ready` once `@enter` hooks ran, then loops:
long-poll `get_inputs` (up to `max` inputs, leased to it), run them, `put_outputs` in batches,
and `heartbeat` every few seconds to keep its leases and learn about cancellations and stops.
A `put_outputs` may carry the container's next poll (`next: {max, timeout}`): its answer is then
a `get_inputs` answer, so a warm call costs the container one round trip instead of two.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..._protocol.rpc import ErrorCode, RpcError
from ..._protocol.rpc_server import Session, eager
from ..auth import Routes
from ..execution.dispatch import STATUSES
from ..execution.queues import Input, InputState
from ..execution.tasks import Task, TaskState
from ..params import Params, invalid
from ..policy.faults import CrashState

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

MAX_BATCH = 1000


class ContainerApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def routes(self) -> Routes:
        return {
            "container.init": self.init,
            "container.ready": self.ready,
            "container.init_failed": self.init_failed,
            "container.get_inputs": self.get_inputs,
            "container.put_outputs": self.put_outputs,
            "container.put_gen_items": self.put_gen_items,
            "container.heartbeat": self.heartbeat,
        }

    def _task(self, session: Session) -> Task:
        task = self.cp.tasks.get(session.identity)
        if task is None or not task.alive:
            raise RpcError(ErrorCode.NOT_FOUND, f"task {session.identity} has exited; stop this container")
        task.last_seen = self.cp.clock.now()
        if not task.connected:
            task.connected = True
            task.disconnected_at = None
            session.info["task"] = task
        return task

    def on_disconnect(self, session: Session) -> None:
        task = session.info.get("task")
        if isinstance(task, Task) and task.alive:
            task.connected = False
            task.disconnected_at = self.cp.clock.now()

    async def init(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        task = self._task(session)
        task.advance(TaskState.RUNNING)
        function = task.pool.function
        app = function.app
        function_ids = dict(app.function_ids) or {
            f.tag: f.function_id for f in self.cp.catalog.functions_of(app.app_id)}
        answer: dict[str, Any] = {
            "task_id": task.task_id, "function_id": function.function_id, "app_id": app.app_id,
            "app_name": app.name or "", "environment": app.environment, "definition": task.definition,
            "function_ids": function_ids,
        }
        if task.pool.params is not None:
            answer["params"] = task.pool.params
        return answer

    def _mark_ready(self, task: Task) -> None:
        if task.ever_ready:
            return
        task.advance(TaskState.READY)
        task.ever_ready = True
        task.idle_since = self.cp.clock.now()
        task.pool.crash = CrashState()  # a container of it works: crash streaks start again

    async def ready(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        task = self._task(session)
        task.profile.on_ready(raw.get("profile"), self.cp.clock.now(), task.pool.n_pending > 0)
        self._mark_ready(task)
        self.cp.task_api.profile_progress(task)
        return {}

    async def init_failed(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("container.init_failed", raw)
        error = p.text("error", "")
        traceback = p.text("traceback", "")
        self.cp.dispatcher.init_failed(self._task(session), error or "the container failed to start", traceback)
        return {}

    @eager  # hot: started in data_received (rpc_server.eager)
    async def get_inputs(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("container.get_inputs", raw)
        max_inputs = min(p.integer("max", 1, minimum=1), MAX_BATCH)
        timeout = p.timeout()
        return await self._lease(self._task(session), max_inputs, timeout)

    async def _lease(self, task: Task, max_inputs: int, timeout: float) -> dict[str, Any]:
        """Lease up to `max_inputs` of the task's pool to it, waiting up to `timeout` for one."""
        self._mark_ready(task)
        pool = task.pool
        batch = pool.take(task, max_inputs, task.last_seen)
        if not batch and timeout > 0 and not task.stop_requested:
            batch = await self._wait(task, max_inputs, timeout)
            task.last_seen = self.cp.clock.now()
        if batch:
            for inp in batch:
                inp.call.started = True
            if task.profile.first_input_at is None:
                task.profile.on_first_input(self.cp.clock.now())
                self.cp.task_api.profile_progress(task)
            return {"inputs": [inp.leased_view() for inp in batch], "stop": False}
        return {"inputs": [], "stop": task.stop_requested}

    async def _wait(self, task: Task, max_inputs: int, timeout: float) -> list[Input]:
        pool = task.pool
        future = pool.park(task, max_inputs)
        handle = asyncio.get_running_loop().call_later(timeout, _expire, future)
        try:
            return await future
        except asyncio.CancelledError:
            # The connection went away after inputs were handed over: give them to someone else.
            if future.done() and not future.cancelled() and future.result():
                self.cp.dispatcher.requeue_internal(future.result(), "its container disconnected")
            raise
        finally:
            handle.cancel()
            pool.unpark(future)

    @eager  # hot: started in data_received (rpc_server.eager)
    async def put_outputs(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("container.put_outputs", raw)
        outputs = p.items("outputs")
        for n, out in enumerate(outputs):
            if (not isinstance(out, dict) or not isinstance(out.get("input_id"), str)
                    or not isinstance(out.get("attempt"), int) or out.get("status") not in STATUSES):
                raise invalid("container.put_outputs",
                              f"outputs[{n}] must be a ContainerOutput {{input_id, attempt, status, ...}} with "
                              f"status one of {', '.join(sorted(STATUSES))}")
        poll = raw.get("next")
        if poll is not None and not isinstance(poll, dict):
            raise invalid("container.put_outputs", "field 'next' must be a get_inputs poll {max, timeout}")
        if poll is not None:
            q = Params("container.put_outputs", poll)
            max_inputs = min(q.integer("max", 1, minimum=1), MAX_BATCH)
            timeout = q.timeout()
        task = self._task(session)
        await self.cp.dispatcher.complete(task, outputs)
        if task.pool.function.single_use and task.served and not task.leased:
            self.cp.dispatcher.stop_task(task, "single-use container finished its input")
        # Let the callers these outputs woke (a `.remote()`'s call.run, a map's get_outputs) answer
        # first: the container's acknowledgement is off every caller's path, and on a small machine
        # each socket write (a wake-up of the peer) costs tens of microseconds.
        await asyncio.sleep(0)
        if poll is None:
            return {}
        # The container's next poll rides on its outputs (two messages a call fewer than an
        # acknowledgement plus a separate `get_inputs`); it leases and waits exactly as that does.
        return await self._lease(task, max_inputs, timeout)

    async def put_gen_items(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("container.put_gen_items", raw)
        input_id = p.text("input_id")
        attempt = p.integer("attempt")
        start = p.integer("start", minimum=0)
        items = p.items("items")
        if not all(isinstance(item, bytes) for item in items):
            raise invalid("container.put_gen_items", "field 'items' must be a list of bytes")
        self._task(session)
        inp = self.cp.calls.inputs.get(input_id)
        if inp is None or inp.attempt != attempt or inp.state is InputState.DONE:
            return {}  # a stale attempt's items
        call = inp.call
        have = len(call.gen_items)
        if start > have:
            raise invalid("container.put_gen_items", f"items start at {start} but only {have} arrived; "
                                                     "send them in order")
        fresh = items[have - start:]
        if fresh:
            call.gen_items.extend(fresh)
            call.signal.notify()
        return {}

    async def heartbeat(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("container.heartbeat", raw)
        running = set(p.strings("running_input_ids")) if raw.get("running_input_ids") is not None else set()
        task = self._task(session)
        now = task.last_seen
        # Anything it runs that is no longer its lease (cancelled, finished elsewhere) should stop.
        cancel = (running - task.leased.keys()) | (task.cancel_ids & running)
        task.cancel_ids.clear()
        for input_id in running:
            held = task.leased.get(input_id)
            if held is not None:
                held.seen_at = now  # renews its lease
        return {"cancel_input_ids": sorted(cancel), "stop": task.stop_requested}


def _expire(future: asyncio.Future[list[Input]]) -> None:
    if not future.done():
        future.set_result([])
