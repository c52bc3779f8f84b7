"""Restart recovery: spawned calls that hadn't finished are queued again; containers come back.

An async input is in the store before `call.start` answers, and its output is stored before it
is delivered, so after a crash (even `kill -9`) every input without an output runs again, with
the attempt number it had reached. Sync calls are not recovered: their callers, reconnecting,
start them again with the inputs whose outputs they haven't received (docs/exactly-once.md).

Containers outlive a restart too: the worker agent keeps them running and they reconnect with
their token (whose hash is stored). One that doesn't call back within a lease is written off.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..policy.placement import Placed
from ..store import CallRecord, InputRecord, OutputRecord
from .calls import Call
from .queues import Input
from .tasks import Task, TaskState

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

log = logging.getLogger("skylift.server")


def recover_calls(cp: ControlPlane) -> int:
    """Rebuild unfinished durable calls from the store and queue their pending inputs."""
    store = cp.db.store
    requeued = 0
    for rec in store.unfinished_calls():
        outputs = store.get_outputs(rec.call_id, 0, max(rec.num_inputs, 1))
        requeued += _rebuild(cp, rec, outputs, store.pending_inputs(rec.call_id))
    if requeued:
        log.info("re-queued %d inputs of spawned calls after a restart", requeued)
    return requeued


async def recover_call(cp: ControlPlane, call_id: str) -> None:
    """Bring one stored, unfinished call into memory while running.

    A store that committed a call but reported failure leaves it only on disk; its caller's retry
    (same idempotency key) finds it there, and this queues it as a restart would have.
    """
    store = cp.db.store

    def load() -> tuple[CallRecord, list[OutputRecord], list[InputRecord]] | None:
        rec = store.get_call(call_id)
        if rec is None or rec.state not in ("pending", "running"):
            return None
        return rec, store.get_outputs(call_id, 0, max(rec.num_inputs, 1)), store.pending_inputs(call_id)

    loaded = await cp.db.run(load)
    if loaded is not None and cp.calls.get(call_id) is None:
        _rebuild(cp, *loaded)


def _rebuild(cp: ControlPlane, rec: CallRecord, outputs: list[OutputRecord], pending: list[InputRecord]) -> int:
    """Put a stored call back in memory and queue its inputs without an output; returns how many."""
    store = cp.db.store
    now = cp.clock.now()
    function = cp.catalog.functions.get(rec.function_id)
    if function is None or not function.app.running:
        cp.dispatcher.spawn(cp.db.run(store.record_outputs, [], [(rec.call_id, "terminated", time.time())]))
        return 0
    pool = cp.pools.get(function, rec.params)
    call = Call(rec.call_id, function, pool, kind=rec.kind, invocation="async", created_at=rec.created_at,
                parent_input_id=rec.parent_input_id, closed=rec.closed)
    call.input_ids = [""] * rec.num_inputs
    for out in outputs:
        if out.index < len(call.input_ids):
            call.input_ids[out.index] = out.input_id
        call.n_done += 1
        if out.output.get("status") != "success":
            call.n_failed += 1
        call.deliver(out.output, now)
    inputs = [Input(r.input_id, call, r.index, r.args, r.method, attempt=r.attempt) for r in pending]
    for inp in inputs:
        if inp.index < len(call.input_ids):
            call.input_ids[inp.index] = inp.input_id
    cp.calls.add(call)
    if call.finished:  # every output was stored but the call wasn't marked finished
        cp.dispatcher.spawn(cp.db.run(store.record_outputs, [], [(rec.call_id, call.state(), time.time())]))
        return 0
    cp.dispatcher.enqueue(call, inputs)
    return len(inputs)


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
