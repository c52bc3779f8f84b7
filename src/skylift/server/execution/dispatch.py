"""The life of an input: submitted, leased, retried, re-run, finished — and of the tasks running them.

Every path that decides an input's fate goes through `Dispatcher`, so the rules hold everywhere:

* An input is finished once. `settle` marks it done synchronously (before any await), so a
  duplicate output, a late output from a killed container or a cancel racing a result can never
  change a finished result.
* A user failure or timeout is retried per the function's `Retries` with backoff, as a new
  attempt; only the final output is delivered.
* A platform failure (container crash, lost worker, expired lease) re-runs the same attempt
  without counting against user retries, up to `internal_retry_cap` times.
* Durable (async) inputs and their outputs are written to the store before they are
  acknowledged; sync ones never touch it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..._protocol import api, ids
from ..clock import Clock
from ..params import invalid
from ..policy.faults import CAUSE_OOM, CrashState, Fault, FaultKind, classify_exit, crash_verdict
from ..settings import Settings
from ..store import Database, InputRecord, OutputRecord
from .calls import Call, Calls
from .catalog import AppState
from .queues import Input, InputState, Pool, Pools
from .tasks import Task, Tasks, TaskState
from .workers import Workers

log = logging.getLogger("skylift.server")

OUTPUT_FIELDS = ("status", "data", "exc_type", "exc_message", "traceback", "python_version", "library_versions")
STATUSES = frozenset({api.STATUS_SUCCESS, api.STATUS_FAILURE, api.STATUS_TIMEOUT, api.STATUS_TERMINATED,
                      api.STATUS_INIT_FAILURE, api.STATUS_INTERNAL_FAILURE})

SystemLog = Callable[[str, str, str, str], None]  # (app_id, task_id, function_tag, text)


_OWN_FIELDS = frozenset(OUTPUT_FIELDS) | {"input_id", "attempt"}


def make_output(inp: Input, fields: dict[str, Any]) -> dict[str, Any]:
    """The output a caller gets, from a container's (or the platform's) `fields`, which it takes
    over: a `.map` settles one per input, so the common case (nothing unknown, nothing None)
    reuses the dict instead of copying it."""
    if fields.keys() <= _OWN_FIELDS and None not in fields.values():
        fields.pop("attempt", None)
        fields["index"] = inp.index
        fields["input_id"] = inp.input_id
        return fields
    output = {"index": inp.index, "input_id": inp.input_id}
    for name in OUTPUT_FIELDS:
        value = fields.get(name)
        if value is not None:
            output[name] = value
    return output


def error_output(inp: Input, status: str, message: str, *, exc_type: str = "", traceback: str = "") -> dict[str, Any]:
    fields: dict[str, Any] = {"status": status, "exc_message": message}
    if exc_type:
        fields["exc_type"] = exc_type
    if traceback:
        fields["traceback"] = traceback
    return make_output(inp, fields)


@dataclass
class Settled:
    deliveries: list[tuple[Input, dict[str, Any]]]
    records: list[OutputRecord]
    finished: list[tuple[str, str, float]]


class Dispatcher:
    def __init__(self, *, db: Database, clock: Clock, settings: Settings, calls: Calls, pools: Pools,
                 tasks: Tasks, workers: Workers, system_log: SystemLog, wake_scaler: Callable[[], None]) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.calls = calls
        self.pools = pools
        self.tasks = tasks
        self.workers = workers
        self.system_log = system_log
        self.wake_scaler = wake_scaler
        self._background: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run follow-up work (persistence, delivery) without making the caller wait."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    async def drain_background(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # ---- submitting ---------------------------------------------------------------------------

    def make_inputs(self, call: Call, items: list[Any], method: str, input_ids: list[str] | None = None) -> list[Input]:
        """Build inputs for `items` (InputItems) at the end of `call`, reserving their indices
        (`input_ids`: fresh ids the caller drew itself, one per item)."""
        inputs = []
        start = len(call.input_ids)
        if input_ids is None:
            input_ids = ids.new_ids("input", len(items))
        for offset, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("args"), bytes):
                raise invalid(method, f"inputs[{offset}] must be a map with 'args' (bytes)")
            name = item.get("method")
            if name is not None and not isinstance(name, str):
                raise invalid(method, f"inputs[{offset}].method must be a string")
            if len(item["args"]) > api.MAX_PAYLOAD_BYTES:
                raise invalid(method, f"inputs[{offset}] is {len(item['args'])} bytes; the limit is "
                                      f"{api.MAX_PAYLOAD_BYTES} bytes")
            inputs.append(Input(input_ids[offset], call, start + offset, item["args"], name))
        call.input_ids.extend(inp.input_id for inp in inputs)
        return inputs

    async def submit(self, call: Call, inputs: list[Input], *, first: bool, key: str | None = None) -> None:
        """Persist (durable calls, with their idempotency key), then queue `inputs` made by `make_inputs`."""
        if call.durable:
            records = [InputRecord(i.input_id, call.call_id, i.index, i.args, i.method, i.attempt) for i in inputs]
            if first:
                await self.db.run(self.db.store.insert_call, call.record(), records, key)
            else:
                await self.db.run(self.db.store.add_inputs, call.call_id, records, len(call.input_ids))
        self.enqueue(call, inputs)

    def enqueue(self, call: Call, inputs: list[Input]) -> None:
        call.last_input_at = self.clock.now()
        for inp in inputs:
            call.live[inp.input_id] = inp
            self.calls.inputs[inp.input_id] = inp
        if call.cancelled:
            self.finish_soon([(i, error_output(i, api.STATUS_TERMINATED, f"call {call.call_id} was cancelled"))
                              for i in inputs])
            return
        call.pool.enqueue(inputs, self.clock.now())

    # ---- outputs from containers --------------------------------------------------------------

    async def complete(self, task: Task, outputs: list[dict[str, Any]]) -> None:
        """Outputs from `task`'s container. The first output of an attempt wins, from whichever holder."""
        now = self.clock.now()
        finals: list[tuple[Input, dict[str, Any]]] = []
        requeue: list[Input] = []
        for fields in outputs:
            inp = self.calls.inputs.get(fields["input_id"])
            if (inp is None or fields.get("attempt") != inp.attempt or inp.state is InputState.DONE
                    or inp.state is InputState.RETRY_WAIT):
                continue  # a duplicate, or an attempt already decided: never changes a result
            status = fields["status"]
            if status == api.STATUS_TERMINATED:
                # The container gave it up (shutting down): run it elsewhere, unless someone else has it.
                if inp.task is task:
                    requeue.append(inp)
                continue
            if inp.state is InputState.PENDING:  # redelivered after its lease expired; this one won
                inp.call.pool.discard(inp)
            if inp.task is not None:
                inp.task.release(inp, now)
                inp.task = None
            inp.call.pool.last_active = now
            inp.call.pool.n_completed += 1
            output = make_output(inp, fields)
            if status in (api.STATUS_FAILURE, api.STATUS_TIMEOUT):
                self._retry_or_final(inp, output, finals)
            else:
                finals.append((inp, output))
        if requeue:
            finals.extend(self._requeue_internal(requeue, "its container stopped while running it"))
        await self.finish(finals)

    def _retry_or_final(self, inp: Input, output: dict[str, Any], finals: list[tuple[Input, dict[str, Any]]]) -> None:
        policy = inp.call.pool.function.retry
        delay = policy.delay_before(inp.attempt + 1)
        if delay is None or inp.call.cancelled:
            finals.append((inp, output))
            return
        inp.state = InputState.RETRY_WAIT
        inp.task = None
        inp.attempt += 1
        function = inp.call.pool.function
        self.system_log(function.app.app_id, "", function.tag,
                        f"{function.tag} failed ({output.get('exc_type') or output['status']}: "
                        f"{output.get('exc_message', '')}); retrying in {delay:g}s "
                        f"(attempt {inp.attempt} of {policy.max_retries + 1})")
        if inp.call.durable:
            self.spawn(self.db.run(self.db.store.set_attempts, [(inp.input_id, inp.attempt)]))
        asyncio.get_running_loop().call_later(delay, self._retry_due, inp)

    def _retry_due(self, inp: Input) -> None:
        if inp.state is InputState.RETRY_WAIT:
            inp.call.pool.enqueue([inp], self.clock.now())

    def _requeue_internal(self, inputs: list[Input], reason: str) -> list[tuple[Input, dict[str, Any]]]:
        """Run inputs again after a platform failure; those past the cap fail. Returns the failures."""
        now = self.clock.now()
        failed: list[tuple[Input, dict[str, Any]]] = []
        by_pool: dict[Pool, list[Input]] = {}
        for inp in inputs:
            if inp.state is not InputState.LEASED:
                continue
            if inp.task is not None:
                inp.task.release(inp, now)
                inp.task = None
            inp.internal_failures += 1
            if inp.internal_failures > self.settings.internal_retry_cap:
                failed.append((inp, error_output(
                    inp, api.STATUS_INTERNAL_FAILURE,
                    f"{inp.call.pool.function.tag} could not run: {reason} "
                    f"({inp.internal_failures} times, the limit is {self.settings.internal_retry_cap})")))
            else:
                by_pool.setdefault(inp.call.pool, []).append(inp)
        for pool, batch in by_pool.items():
            pool.enqueue(batch, now, front=True)
        return failed

    def requeue_internal(self, inputs: list[Input], reason: str) -> None:
        self.finish_soon(self._requeue_internal(inputs, reason))

    # ---- finishing ----------------------------------------------------------------------------

    def settle(self, finals: list[tuple[Input, dict[str, Any]]]) -> Settled | None:
        """Mark inputs done now (so nothing can change them) and prepare what to persist/deliver."""
        if not finals:
            return None
        now = self.clock.now()
        wall = time.time()
        settled = Settled([], [], [])
        last_status: dict[Call, str] = {}
        for inp, output in finals:
            if inp.state is InputState.DONE and inp.input_id not in inp.call.live:
                continue
            if inp.state is InputState.PENDING:
                inp.call.pool.discard(inp)
            inp.state = InputState.DONE
            if inp.task is not None:
                inp.task.release(inp, now)
                inp.task = None
            call = inp.call
            self.calls.inputs.pop(inp.input_id, None)
            call.live.pop(inp.input_id, None)
            call.n_done += 1
            if output["status"] != api.STATUS_SUCCESS:
                call.n_failed += 1
            settled.deliveries.append((inp, output))
            if call.durable:
                settled.records.append(OutputRecord(inp.input_id, call.call_id, inp.index, output, wall))
                last_status[call] = output["status"]
        for call, status in last_status.items():
            if call.all_decided:
                if call.cancelled:
                    state = api.STATUS_TERMINATED
                elif call.kind == "map":
                    state = api.STATUS_FAILURE if call.n_failed else api.STATUS_SUCCESS
                else:
                    state = status
                settled.finished.append((call.call_id, state, wall))
        return settled

    async def publish(self, settled: Settled) -> None:
        if settled.records or settled.finished:
            try:
                await self.db.run(self.db.store.record_outputs, settled.records, settled.finished)
            except Exception:
                log.exception("could not persist %d outputs", len(settled.records))
        now = self.clock.now()
        for inp, output in settled.deliveries:
            inp.call.deliver(output, now)

    async def finish(self, finals: list[tuple[Input, dict[str, Any]]]) -> None:
        settled = self.settle(finals)
        if settled is not None:
            await self.publish(settled)

    def finish_soon(self, finals: list[tuple[Input, dict[str, Any]]]) -> None:
        settled = self.settle(finals)
        if settled is not None:
            self.spawn(self.publish(settled))

    def fail_pending(self, pool: Pool, status: str, message: str, *, traceback: str = "") -> int:
        """Fail every input waiting in `pool` (init failure, unplaceable GPU, failed image)."""
        drained = pool.drain()
        self.finish_soon([(inp, error_output(inp, status, message, traceback=traceback)) for inp in drained])
        return len(drained)

    def cancel(self, call: Call, *, terminate_containers: bool = False, message: str = "") -> None:
        call.cancelled = True
        message = message or f"call {call.call_id} was cancelled"
        to_kill: dict[str, Task] = {}
        finals = []
        for inp in list(call.live.values()):
            if inp.state is InputState.LEASED and inp.task is not None:
                inp.task.cancel_ids.add(inp.input_id)
                if terminate_containers:
                    to_kill[inp.task.task_id] = inp.task
            finals.append((inp, error_output(inp, api.STATUS_TERMINATED, message, exc_type="InputCancellation")))
        self.finish_soon(finals)
        for task in to_kill.values():
            self.kill_task(task, "its input was cancelled")

    # ---- tasks --------------------------------------------------------------------------------

    def stop_task(self, task: Task, reason: str, *, kill: bool = False) -> None:
        """Ask a container to drain and exit (or kill it). Its inputs are not touched here."""
        if not task.alive:
            return
        now = self.clock.now()
        first = not task.stop_requested
        if first or (kill and not task.kill_sent):
            log.info("%s container %s of %r: %s", "killing" if kill else "stopping", task.task_id,
                     task.pool.function.tag, reason)
        task.stop_requested = True
        task.stop_reason = task.stop_reason or reason
        task.advance(TaskState.STOPPING)
        task.pool.release_waiters(task)
        worker = self.workers.get(task.worker_id)
        if kill:
            if not task.kill_sent and worker is not None:
                worker.send({"op": "stop_task", "task_id": task.task_id, "kill": True})
            task.kill_sent = True
            task.stop_deadline = now
        elif first:
            # A container busy with inputs may finish them before it goes (redeploy drains).
            grace = self.settings.stop_grace + (task.pool.function.timeout if task.leased else 0.0)
            task.stop_deadline = now + grace
            if not task.connected and worker is not None:
                worker.send({"op": "stop_task", "task_id": task.task_id, "kill": False})
        self.wake_scaler()

    def kill_task(self, task: Task, reason: str) -> None:
        """Kill a container now; whatever else it was running is re-run elsewhere."""
        self.stop_task(task, reason, kill=True)
        if task.leased:
            self.requeue_internal(list(task.leased.values()), f"its container was killed ({reason})")

    def task_exited(self, task: Task, exit_code: int | None, message: str = "", *, cause: str = "",
                    signal_number: int | None = None) -> None:
        """A container ended: settle its leases and count the end by its classification (faults.py)."""
        if not task.alive:
            return
        now = self.clock.now()
        fault = classify_exit(exit_code=exit_code, signal_number=signal_number, cause=cause,
                              stop_requested=task.stop_requested, init_failed=task.init_failed)
        task.advance(TaskState.EXITED)
        task.exit_code = exit_code
        worker = self.workers.get(task.worker_id)
        if worker is not None and task.reserved:
            worker.release(task.placed)
            task.reserved = False
        self.tasks.forget(task)
        self.spawn(self.db.run(self.db.store.delete_task, task.task_id))
        pool = task.pool
        pool.release_waiters(task)
        code = "unknown" if exit_code is None else str(exit_code)
        detail = f"{message}" if message else ""
        if task.leased and cause == CAUSE_OOM:
            # The inputs themselves used the memory: running them elsewhere would only repeat it.
            finals: list[tuple[Input, dict[str, Any]]] = []
            for inp in [i for i in task.leased.values() if i.state is InputState.LEASED]:
                task.release(inp, now)
                inp.task = None
                self._retry_or_final(inp, error_output(
                    inp, api.STATUS_FAILURE, f"{pool.function.tag}: its container {detail or 'ran out of memory'}",
                    exc_type="OutOfMemoryError"), finals)
            self.finish_soon(finals)
        elif task.leased:
            self.requeue_internal(list(task.leased.values()),
                                  f"its container exited with code {code}" + (f" ({detail})" if detail else ""))
        if fault.kind is not FaultKind.PLATFORM_STOP:
            self._count_exit(task, fault, code, detail, now, cause_is_oom=cause == CAUSE_OOM)
        self.wake_scaler()

    def _count_exit(self, task: Task, fault: Fault, code: str, detail: str, now: float, *,
                    cause_is_oom: bool) -> None:
        """Log the end with its classification; before ready, update the pool's crash loop."""
        pool = task.pool
        function = pool.function
        when = "before it was ready" if not task.ever_ready else "while running"
        if fault.kind is FaultKind.USER:
            cost = ("counted as a crash of the function" if not task.ever_ready
                    else "its inputs fail (retries apply)" if cause_is_oom else "its inputs run again")
        else:
            cost = "its inputs run again; not counted against retries or the crash limit"
        text = f"the container for {function.tag!r} exited with code {code} {when}" + (f": {detail}" if detail else "")
        if task.init_failed:
            return  # init_failed already counted and logged it
        self.system_log(function.app.app_id, task.task_id, function.tag,
                        f"{text} [{fault.kind.value}: {fault.reason}; {cost}]")
        if task.ever_ready:
            return
        verdict = crash_verdict(fault, pool.crash, now=now, user_limit=self.settings.startup_crash_limit,
                                platform_limit=self.settings.internal_retry_cap,
                                backoff_max=self.settings.crash_backoff_max)
        if verdict is None:
            return
        pool.crash = verdict.state
        pool.crash_definition = task.definition
        pool.backoff_until = max(pool.backoff_until, now + verdict.backoff)
        if verdict.give_up:
            if fault.kind is FaultKind.USER:
                self.give_up_on(pool, api.STATUS_INIT_FAILURE, f"{text} ({verdict.state.streak} times in a row)")
            else:
                self.give_up_on(pool, api.STATUS_INTERNAL_FAILURE,
                                f"{text} ({verdict.state.platform_streak} times in a row)")

    def give_up_on(self, pool: Pool, status: str, message: str, *, traceback: str = "",
                   leased: list[Input] | None = None) -> None:
        """The pool's containers keep failing before ready: fail what callers wait for, keep spawned work.

        Sync inputs fail (their callers are connected). Spawned inputs of a deployed app wait for a
        fixed deploy (or for the pool's next try, every `crash_backoff_max` at most), as Modal's do;
        an app that can't be redeployed fails them too, and stopping an app fails whatever waits.
        """
        pool.crash_message = message
        waiting = [inp for inp in (leased or []) if inp.state is InputState.LEASED] + pool.drain()
        keep = pool.function.app.state is AppState.DEPLOYED
        held = [inp for inp in waiting if keep and inp.call.durable]
        failed = [inp for inp in waiting if not (keep and inp.call.durable)]
        now = self.clock.now()
        for inp in held:
            if inp.task is not None:
                inp.task.release(inp, now)
                inp.task = None
        pool.enqueue(held, now, front=True)
        self.finish_soon([(inp, error_output(inp, status, message, traceback=traceback)) for inp in failed])
        if held:
            function = pool.function
            self.system_log(function.app.app_id, "", function.tag,
                            f"{len(held)} spawned input(s) of {function.tag!r} wait for a fixed deploy "
                            f"(`skylift deploy`); the next try is in {max(0.0, pool.backoff_until - now):.0f}s")

    def check_crash_loop(self, pool: Pool) -> None:
        """Before the scaler starts containers: a redeploy ends a crash loop; a pool that gave up answers
        new sync inputs at once (until a redeploy or its next try gets a container ready)."""
        if pool.crash_definition is not None and pool.crash_definition is not pool.function.definition:
            pool.crash = CrashState()  # new code: try it at once
            pool.crash_definition = None
            pool.crash_message = ""
            pool.backoff_until = 0.0
            return
        gave_up = (pool.crash.streak >= self.settings.startup_crash_limit
                   or pool.crash.platform_streak >= self.settings.internal_retry_cap)
        if not (pool.crash_message and gave_up and pool.n_pending):
            return
        if any(not inp.call.durable for _, inp in pool.pending if inp.state is InputState.PENDING):
            status = (api.STATUS_INIT_FAILURE if pool.crash.streak >= self.settings.startup_crash_limit
                      else api.STATUS_INTERNAL_FAILURE)
            self.give_up_on(pool, status, pool.crash_message)

    def init_failed(self, task: Task, error: str, traceback: str) -> None:
        """The container couldn't import the code or run @enter: fail what callers wait for instead of looping."""
        task.init_failed = True
        pool = task.pool
        now = self.clock.now()
        verdict = crash_verdict(classify_exit(exit_code=None, init_failed=True), pool.crash, now=now,
                                user_limit=self.settings.startup_crash_limit,
                                platform_limit=self.settings.internal_retry_cap,
                                backoff_max=self.settings.crash_backoff_max)
        assert verdict is not None
        pool.crash = verdict.state
        pool.crash_definition = task.definition
        pool.backoff_until = max(pool.backoff_until, now + verdict.backoff)
        self.system_log(pool.function.app.app_id, task.task_id, pool.function.tag,
                        f"the container for {pool.function.tag!r} failed to start: {error} "
                        f"[user: counted as a crash of the function]")
        self.stop_task(task, "init failed")  # first: the inputs kept below must not go back to it
        self.give_up_on(pool, api.STATUS_INIT_FAILURE, error, traceback=traceback, leased=list(task.leased.values()))

    def timeout_inputs(self, task: Task, timed_out: list[tuple[Input, float]]) -> None:
        """Inputs ran past the function's timeout: record a timeout (maybe retry) and kill the container."""
        now = self.clock.now()
        finals: list[tuple[Input, dict[str, Any]]] = []
        for inp, elapsed in timed_out:
            function = inp.call.pool.function
            message = f"Function {function.tag!r} timed out after {round(elapsed)}s (timeout={function.timeout:g})"
            self.system_log(function.app.app_id, task.task_id, function.tag, f"{message}; killing its container")
            task.release(inp, now)
            inp.task = None
            self._retry_or_final(inp, error_output(inp, api.STATUS_TIMEOUT, message, exc_type="FunctionTimeoutError"),
                                 finals)
        self.finish_soon(finals)
        self.kill_task(task, "an input timed out")
