"""Restart recovery: spawned calls that hadn't finished are queued again; containers come back.

An async input is in the store before `call.start` answers, and its output is stored before it
is delivered, so after a crash (even `kill -9`) every input without an output runs again, with
the attempt number it had reached. Sync calls are not recovered: their callers saw the
connection drop and raised.

Containers outlive a restart too: the worker agent keeps them running and they reconnect with
their token (whose hash is stored). One that doesn't call back within a lease is written off.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .calls import Call
from .placement import Placed
from .queues import Input
from .tasks import Task, TaskState

if TYPE_CHECKING:
    from .control_plane import ControlPlane

log = logging.getLogger("skylift.server")


def recover_calls(cp: ControlPlane) -> int:
    """Rebuild unfinished durable calls from the store and queue their pending inputs."""
    store = cp.db.store
    now = cp.clock.now()
    requeued = 0
    for rec in store.unfinished_calls():
        function = cp.catalog.functions.get(rec.function_id)
        if function is None or not function.app.running:
            store.record_outputs([], [(rec.call_id, "terminated", time.time())])
            continue
        pool = cp.pools.get(function, rec.params)
        call = Call(rec.call_id, function, pool, kind=rec.kind, invocation="async", created_at=rec.created_at,
                    parent_input_id=rec.parent_input_id, closed=rec.closed)
        call.input_ids = [""] * rec.num_inputs
        for out in store.get_outputs(rec.call_id, 0, max(rec.num_inputs, 1)):
            if out.index < len(call.input_ids):
                call.input_ids[out.index] = out.input_id
            call.n_done += 1
            if out.output.get("status") != "success":
                call.n_failed += 1
            call.deliver(out.output, now)
        inputs = [Input(r.input_id, call, r.index, r.args, r.method, attempt=r.attempt)
                  for r in store.pending_inputs(rec.call_id)]
        for inp in inputs:
            if inp.index < len(call.input_ids):
                call.input_ids[inp.index] = inp.input_id
        cp.calls.add(call)
        if call.finished:  # every output was stored but the call wasn't marked finished
            store.record_outputs([], [(rec.call_id, call.state(), time.time())])
            continue
        cp.dispatcher.enqueue(call, inputs)
        requeued += len(inputs)
    if requeued:
        log.info("re-queued %d inputs of spawned calls after a restart", requeued)
    return requeued


def recover_tasks(cp: ControlPlane) -> int:
    """Re-adopt the containers of running apps; they count as capacity until they call back (or not)."""
    store = cp.db.store
    now = cp.clock.now()
    adopted = 0
    for rec in store.list_tasks():
        function = cp.catalog.functions.get(rec.function_id)
        if function is None or not function.app.running:
            store.delete_task(rec.task_id)
            continue
        pool = cp.pools.get(function, rec.params)
        placed = Placed(rec.worker_id, rec.cpu, rec.memory_mb, rec.gpu_type, rec.gpu_count)
        task = Task(rec.task_id, rec.token_hash, pool, rec.worker_id, placed, created_at=now,
                    state=TaskState.RUNNING, idle_since=now, last_seen=now, ever_ready=True,
                    disconnected_at=now, definition=function.definition)
        cp.tasks.add(task)
        adopted += 1
    if adopted:
        log.info("waiting for %d container(s) from before the restart to reconnect", adopted)
    return adopted
