"""The periodic sweep: everything that happens because time passed.

* leases: a task with inputs that sent nothing for `lease_seconds` is presumed hung or gone; it
  is killed and its inputs run elsewhere (same attempt, not a user retry). An input its (live)
  container stopped listing in heartbeats for that long is handed out again too;
* timeouts: an input past its function's `timeout` gets a timeout output (maybe a retry) and
  its container is killed;
* stops: a container told to stop that hasn't gone after its grace is killed; one that never
  reports its exit is written off;
* ephemeral apps whose client stopped heartbeating are stopped;
* workers that didn't reconnect within their grace lose their containers (at once when the
  embedded worker's supervisor saw it exit: `WorkerApi.lose`);
* sync calls whose caller went away are cancelled; finished calls leave memory;
* spawned calls' results and app logs expire after OUTPUT_TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from .catalog import AppState
from .queues import Input
from .tasks import Task

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

log = logging.getLogger("skylift.server")

EXPIRY_PERIOD = 3600.0
STARTUP_DEADLINE = 600.0  # a container that never calls in after this long is written off
OPEN_CALL_IDLE = 3600.0  # a spawn_map that got no inputs for this long is closed as it stands


class Sweeper:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._last_expiry = -EXPIRY_PERIOD

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.cp.settings.sweep_interval)
            try:
                self.sweep()
            except Exception:
                log.exception("sweep failed; continuing")

    def sweep(self) -> None:
        now = self.cp.clock.now()
        for task in self.cp.tasks.all():
            self._sweep_task(task, now)
        self._sweep_apps(now)
        self._sweep_workers(now)
        self._sweep_calls(now)
        if now - self._last_expiry >= EXPIRY_PERIOD:
            self._last_expiry = now
            cutoff = time.time() - self.cp.settings.output_ttl
            store = self.cp.db.store
            self.cp.dispatcher.spawn(self.cp.db.run(store.expire_calls, cutoff))
            self.cp.dispatcher.spawn(self.cp.db.run(store.prune_logs, cutoff))  # logs are kept as long

    def _sweep_task(self, task: Task, now: float) -> None:
        settings = self.cp.settings
        dispatcher = self.cp.dispatcher
        if task.leased and not task.kill_sent:
            silent = now - task.last_seen
            if silent > settings.lease_seconds:
                dispatcher.kill_task(task, f"it sent nothing for {silent:.0f}s (lease {settings.lease_seconds:g}s)")
                return
            lost = [inp for inp in task.leased.values() if now - inp.seen_at > settings.lease_seconds]
            if lost:  # it heartbeats but no longer lists them (an answer lost on the way, a bug)
                dispatcher.requeue_internal(lost, "its container stopped renewing its lease")
            timeout = task.pool.function.timeout
            late: list[tuple[Input, float]] = [(inp, now - inp.started_at) for inp in task.leased.values()
                                               if now - inp.started_at > timeout]
            if late:
                dispatcher.timeout_inputs(task, late)
                return
        if task.stop_requested and task.stop_deadline is not None:
            if not task.kill_sent and now > task.stop_deadline:
                dispatcher.stop_task(task, "it did not stop in time", kill=True)
            elif task.kill_sent and now > task.stop_deadline + settings.lease_seconds:
                dispatcher.task_exited(task, None, "its worker never reported it gone")
            return
        if not task.connected:
            since = task.disconnected_at if task.disconnected_at is not None else task.created_at
            limit = settings.reconnect_grace if task.disconnected_at is not None else STARTUP_DEADLINE
            if now - since > limit:
                dispatcher.kill_task(task, "its container disconnected" if task.disconnected_at is not None
                                     else "its container never called in")

    def _sweep_apps(self, now: float) -> None:
        timeout = self.cp.settings.app_heartbeat_timeout
        for app in list(self.cp.catalog.apps.values()):
            if app.state is AppState.EPHEMERAL and now - app.last_heartbeat > timeout:
                self.cp.dispatcher.spawn(self.cp.app_api.stop_app(
                    app, f"its client sent no heartbeat for {now - app.last_heartbeat:.0f}s"))

    def _sweep_workers(self, now: float) -> None:
        for worker in self.cp.workers.all():
            if worker.connected or worker.disconnected_at is None:
                continue
            gone = now - worker.disconnected_at
            if gone > self.cp.settings.worker_grace:
                self.cp.worker_api.lose(worker, f"its worker {worker.worker_id} did not reconnect for {gone:.0f}s")

    def _sweep_calls(self, now: float) -> None:
        settings = self.cp.settings
        for call in list(self.cp.calls.calls.values()):
            if call.durable and not call.closed and now - call.last_input_at > OPEN_CALL_IDLE:
                # A spawn_map whose client died mid-stream: run what arrived and finish.
                self.cp.dispatcher.spawn(self.cp.call_api.close(call))
            elif call.finished:
                if call.finished_at is not None and now - call.finished_at > settings.finished_call_memory:
                    self.cp.call_api.forget(call)
            elif call.orphaned_since is not None and now - call.orphaned_since > settings.orphan_grace:
                self.cp.dispatcher.cancel(call, message=f"call {call.call_id} was abandoned by its caller")
                self.cp.call_api.forget(call)
