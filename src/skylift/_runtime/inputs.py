"""The input loop: lease inputs, run them with the right concurrency, send back outputs.

One asyncio loop does all I/O (leases, heartbeats, outputs). Async user functions run as tasks
on it; sync ones run in worker threads (as many as `max_inputs`) that take inputs from a queue,
so prefetched inputs run back to back without a round trip to the control plane each.

A cancelled input that is still queued, or running as an asyncio task, is terminated cleanly.
One running in a thread gets `InputCancellation` raised inside it; if the thread doesn't notice
within `CANCEL_GRACE_SECONDS` (it is blocked in C code), the container exits, as Modal's does.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import threading
import time
from typing import Any

from .._context import current_call_id_var, current_input_id_var
from .._protocol import api
from .._serialization import deserialize, failure_output, serialize, success_output
from ..exception import InputCancellation, InvalidError
from .batcher import _Batcher
from .container_io import Caller, GenStream, OutputSender
from .direct import DirectLink
from .disk_full import annotate
from .input_state import Input, Job
from .sync_pool import SyncPool, _clear_async_exc, _inject
from .user_code import Service, Target

# How long a `get_inputs` long-poll may stay open; below the control plane's ceiling.
POLL_SECONDS = api.MAX_POLL_SECONDS - 5
# Prefetch a few inputs beyond the free slots, but only for functions whose inputs are quick:
# for those a round trip per input dominates, while for slow ones prefetching would hold leases
# that an idle container could run now.
# The quicker the inputs, the deeper the prefetch: for a no-op function the round trip and the
# per-input overhead dominate, so leasing many at once is what gets .map to tens of thousands of
# inputs a second; each step keeps the prefetched work to at most ~50 ms. Below 100 µs an input
# the per-round-trip cost (a socket write wakes a process: tens of µs on a small VM, on each side)
# is the cost, so a round trip carries up to 256 (25 ms of work at most).
PREFETCH_BY_SPEED = ((0.0001, 256), (0.0005, 64), (0.002, 16), (0.05, 4))
FAST_INPUT_SECONDS = 0.05
CANCEL_GRACE_SECONDS = 1.0


def heartbeat_interval() -> float:
    # Overridable so tests of cancellation don't wait 5 s for each heartbeat.
    return float(os.environ.get("SKYLIFT_HEARTBEAT_INTERVAL") or api.HEARTBEAT_INTERVAL)


def _terminated(inp: Input) -> dict[str, Any]:
    exc = InputCancellation(f"input {inp.input_id} was cancelled")
    return failure_output(exc, status=api.STATUS_TERMINATED)


def _strip_runtime_frames(exc: BaseException) -> BaseException:
    """Start the traceback at the user's code: the runtime's own frames are noise to the user."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb
    return exc


def _failure(exc: BaseException) -> dict[str, Any]:
    annotate(exc)  # a full ephemeral disk is named as such
    return failure_output(_strip_runtime_frames(exc))


def _success(value: Any, function_name: str | None = None) -> dict[str, Any]:
    try:
        return success_output(value, function_name=function_name)
    except Exception as exc:  # an unpicklable return value is the user's error, reported as theirs
        return failure_output(exc)


def _call_args(target: Target, batch: list[Input]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if len(batch) == 1 and target.batch is None:
        args, kwargs = deserialize(batch[0].args, what="arguments")
        return tuple(args), dict(kwargs)
    # A batched function is called once with a list per parameter.
    sig = inspect.signature(target.fn)
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InvalidError(f"batched function {target.fn.__qualname__} can't take *args or **kwargs")
    columns: dict[str, list[Any]] = {name: [] for name in sig.parameters}
    for inp in batch:
        args, kwargs = deserialize(inp.args, what="arguments")
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            columns[name].append(value)
    positional = tuple(columns.pop(name) for name, p in sig.parameters.items() if p.kind == p.POSITIONAL_ONLY)
    return positional, columns


def _outputs(target: Target, batch: list[Input], result: Any) -> list[dict[str, Any]]:
    if target.web:
        return [{"status": api.STATUS_SUCCESS} for _ in batch]
    if target.batch is None:
        return [_success(result, target.fn.__qualname__)]
    if not isinstance(result, list) or len(result) != len(batch):
        got = f"a list of {len(result)}" if isinstance(result, list) else f"a {type(result).__name__}"
        error = InvalidError(
            f"batched function {target.fn.__qualname__} received {len(batch)} inputs and returned {got}; "
            "it must return a list with one output per input, in order")
        return [failure_output(error) for _ in batch]
    return [_success(value, target.fn.__qualname__) for value in result]


class InputLoop:
    """Pulls inputs until told to stop, then drains what it holds."""

    def __init__(self, rpc: Caller, service: Service, definition: dict[str, Any]) -> None:
        self.rpc = rpc
        self.service = service
        self.loop = asyncio.get_running_loop()
        concurrency = definition.get("concurrency") or {}
        self.max_inputs = max(1, int(concurrency.get("max_inputs") or 1))
        self.single_use = bool(definition.get("single_use_containers"))
        self.batch_size = _batch_size(service, definition)
        self.sender = OutputSender(rpc, self)
        self.held: dict[str, Input] = {}
        self.exit_code = 0
        self.fatal = False
        self.stopping = False
        self._ewma: float | None = None
        self._room = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._fatal = asyncio.Event()
        self._fetch_task: asyncio.Task[None] | None = None
        self._pool: SyncPool | None = None
        self._slots = asyncio.Semaphore(self.max_inputs)
        self._batchers: dict[str | None, _Batcher] = {}
        self._lock = threading.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._accepted = 0
        self._polling = False  # a get_inputs, or a put_outputs carrying the next poll, is in flight
        self._finished: list[tuple[list[Input], list[dict[str, Any]]]] = []  # from worker threads
        # A single-slot container of sync functions sends a lone input's output from the worker
        # thread, and runs the next input there (direct.py); web containers and tests' fakes don't.
        url, hello = getattr(rpc, "url", None), getattr(rpc, "hello_params", None)
        direct = (self.max_inputs == 1 and self.batch_size == 1 and not self.single_use
                  and not _serves_web(definition) and isinstance(url, str) and isinstance(hello, dict))
        self._direct = DirectLink(url, hello, POLL_SECONDS) if direct else None  # type: ignore[arg-type]
        self._unreleased = 0  # inputs the worker thread finished that the loop hasn't released yet
        self._handed = 0  # inputs the worker thread handed to the loop that it hasn't accepted yet
        self._stop_requested = False  # `request_stop` from another thread (the loop stops soon)

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        self._fetch_task = self.loop.create_task(self._fetch_loop())
        heartbeat = self.loop.create_task(self._heartbeat_loop())
        try:
            try:
                await self._fetch_task
            except asyncio.CancelledError:
                if not self.stopping:
                    raise
            for batcher in self._batchers.values():
                batcher.flush()
            drained = self.loop.create_task(self._drained.wait())
            fatal = self.loop.create_task(self._fatal.wait())
            await asyncio.wait([drained, fatal], return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
            fatal.cancel()
        finally:
            heartbeat.cancel()
            if self._direct is not None:
                self._direct.interrupt()
        await self.sender.flush()

    def request_stop(self) -> None:
        """`stop`, from any thread (`modal.experimental.stop_fetching_inputs` in the user's code):
        the worker thread's direct link takes no input from here on either."""
        with self._lock:
            self._stop_requested = True
        self.loop.call_soon_threadsafe(self.stop)

    def stop(self) -> None:
        """Lease no more inputs; `run` returns once those held are done."""
        if self.stopping:
            return
        self.stopping = True
        if self._fetch_task is not None and not self._fetch_task.done():
            self._fetch_task.cancel()
        if getattr(self.rpc, "connected", True):  # else the outputs may not have gone out yet
            self.sender.abandon_poll()
        if self._direct is not None:
            self._direct.interrupt()  # a direct long-poll ends; its output goes the loop's way
        self._room.set()

    def _capacity(self) -> int:
        if self.single_use:
            return 1
        base = self.max_inputs * self.batch_size
        if self._ewma is None or self.batch_size != 1:
            return base
        return base + next((depth for limit, depth in PREFETCH_BY_SPEED if self._ewma < limit), 0)

    def _rides(self) -> bool:
        """Whether the next poll should wait to ride on an output: every slot is busy, so no
        new input could start before one finishes (a warm call is then four messages, not six)."""
        return self.batch_size == 1 and not self.single_use and len(self.held) >= self.max_inputs

    async def _fetch_loop(self) -> None:
        while not self.stopping:
            room = self._capacity() - len(self.held)
            with self._lock:  # the worker thread may claim the poll too (`_direct_step`)
                wait = room <= 0 or self._polling or self._rides()
                self._polling = True if not wait else self._polling
            if wait:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                response = await self.rpc.call("container.get_inputs", {"max": room, "timeout": POLL_SECONDS})
            except BaseException:
                self._polling = False
                raise
            stop = self._take(response)
            self._polling = False  # after its inputs are held and queued (the worker thread looks)
            if stop:
                self.stopping = True

    def _take(self, response: dict[str, Any]) -> bool:
        """Accept a poll's inputs; whether the container should now stop."""
        self._accept(response.get("inputs") or [])
        return bool(response.get("stop")) or (self.single_use and self._accepted > 0)

    # The OutputSender's side of a poll that rides on a put_outputs.

    def next_poll(self) -> dict[str, Any] | None:
        if self.stopping or self._polling or self.single_use or self.batch_size != 1:
            return None
        room = self._capacity() - len(self.held)
        if room <= 0:
            return None
        with self._lock:
            if self._polling:
                return None
            self._polling = True
        # Nothing left to run here: wait for the next input as get_inputs would. Otherwise take
        # only what is queued now, so the outputs' acknowledgement isn't held back.
        return {"max": room, "timeout": 0 if self.held else POLL_SECONDS}

    def polled(self, answer: Any) -> None:
        # A container told to stop (or stopping on SIGTERM) takes no new input: what was leased
        # on this answer is requeued when it exits.
        stop = isinstance(answer, dict) and "inputs" in answer and not self.stopping and self._take(answer)
        # Cleared once its inputs are held and queued: the worker thread's direct poll looks at both.
        self._polling = False
        if stop:
            self.stop()
        # Wake the fetch loop only if it may poll now: with every slot busy it would only wait again,
        # and that loop pass would come before the worker thread gets the GIL to run the new input.
        if not self._rides():
            self._room.set()

    async def _heartbeat_loop(self) -> None:
        interval = heartbeat_interval()
        while True:
            await asyncio.sleep(interval)
            try:
                response = await self.rpc.call("container.heartbeat", {"running_input_ids": list(self.held)})
            except Exception as exc:
                print(f"skylift: heartbeat failed: {exc!r}", file=sys.stderr, flush=True)
                continue
            if response.get("cancel_input_ids"):
                self.cancel(response["cancel_input_ids"])
            if response.get("stop"):
                self.stop()

    # -- inputs ---------------------------------------------------------------------------

    def _accept(self, raws: list[dict[str, Any]]) -> None:
        # With one slot, the sync inputs of a burst go to the worker thread as one run.
        run: list[Job] | None = [] if self.max_inputs == 1 and len(raws) > 1 else None
        for raw in raws:
            if raw["input_id"] in self.held:
                continue  # a re-delivery of an input still running here (its lease lapsed)
            inp = Input(raw)
            self.held[inp.input_id] = inp
            self._accepted += 1
            self._drained.clear()
            try:
                target = self.service.target(inp.method)
            except Exception as exc:
                self._complete(inp, failure_output(exc))
                continue
            if target.batch is not None:
                batcher = self._batchers.get(inp.method)
                if batcher is None:
                    batcher = self._batchers[inp.method] = _Batcher(self, target)
                batcher.add(inp)
            elif run is not None and not target.is_async:
                run.append((target, [inp]))
            else:
                self._dispatch(target, [inp])
        if run:
            if self._pool is None:
                self._pool = SyncPool(self.max_inputs, self._run_sync)
            self._pool.submit_run(run)

    def _dispatch(self, target: Target, batch: list[Input]) -> None:
        for inp in batch:
            inp.job_size = len(batch)
        if target.is_async:
            task = self.loop.create_task(self._run_async(target, batch))
            for inp in batch:
                inp.task = task
        else:
            if self._pool is None:
                self._pool = SyncPool(self.max_inputs, self._run_sync)
            self._pool.submit(target, batch)

    async def _run_async(self, target: Target, batch: list[Input]) -> None:
        outputs: list[dict[str, Any]]
        try:
            async with self._slots:
                batch = [inp for inp in batch if not inp.done]
                if not batch:
                    return
                first = batch[0]
                first.started = time.monotonic()
                current_input_id_var.set(first.input_id)
                current_call_id_var.set(first.call_id)
                args, kwargs = _call_args(target, batch)
                if target.is_generator:
                    await self._stream_async(target, first, args, kwargs)
                    outputs = [_success(None) for _ in batch]
                else:
                    result = target.fn(*args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                    outputs = _outputs(target, batch, result)
        except asyncio.CancelledError:
            outputs = [_terminated(inp) for inp in batch]
        except BaseException as exc:
            outputs = [_failure(exc) for _ in batch]
        for inp, output in zip(batch, outputs, strict=True):
            self._complete(inp, output)

    async def _stream_async(self, target: Target, inp: Input, args: tuple[Any, ...],
                            kwargs: dict[str, Any]) -> None:
        stream = inp.stream = GenStream(self.rpc, inp.input_id, inp.attempt)
        gen = target.fn(*args, **kwargs)
        if inspect.isawaitable(gen):
            gen = await gen
        if hasattr(gen, "__aiter__"):
            async for item in gen:
                stream.add(serialize(item, what="generator item"))
        else:
            for item in gen:
                stream.add(serialize(item, what="generator item"))

    def _run_sync(self, target: Target, batch: list[Input]) -> None:
        """Runs in a worker thread: the job, then any the direct link hands this thread."""
        job: Job | None = (target, batch)
        while job is not None:
            job = self._run_job(*job)

    def _run_job(self, target: Target, batch: list[Input]) -> Job | None:
        with self._lock:
            batch = [inp for inp in batch if not inp.cancelled and not inp.done]
            ident = threading.get_ident()
            for inp in batch:
                inp.thread_ident = ident
        if not batch:
            return None
        first = batch[0]
        first.started = time.monotonic()
        current_input_id_var.set(first.input_id)
        current_call_id_var.set(first.call_id)
        outputs: list[dict[str, Any]]
        try:
            outputs = self._call_sync(target, batch)
            first.ran = time.monotonic() - first.started
        except BaseException as exc:  # a cancellation that landed in this function's own code
            outputs = [_failure(exc) for _ in batch]
        finally:
            while True:
                try:
                    self._detach(batch, ident)
                    current_input_id_var.set(None)
                    current_call_id_var.set(None)
                    break
                except InputCancellation:
                    continue  # delivered just before _detach cleared it; it was for this input
        if target.is_generator:
            # In order behind its stream and items (call_soon_threadsafe keeps order), never in a
            # burst whose wake-up was scheduled before them.
            self.loop.call_soon_threadsafe(self._complete_all, batch, outputs)
            return None
        if self._direct is not None and len(batch) == 1:
            return self._direct_step(batch[0], outputs[0])
        self._post(batch, outputs)
        return None

    def _direct_step(self, inp: Input, output: dict[str, Any]) -> Job | None:
        """Worker thread: if `inp` is all this container holds, send its output with the next poll
        over the direct link and return the next input's job to run here (see direct.py)."""
        link = self._direct
        assert link is not None
        with self._lock:
            held = len(self.held) - self._unreleased  # (the loop may not have released the last one yet)
            # Only when nothing else is here or on its way (a long-poll would hold the only thread).
            claim = (not link.closed and not self.stopping and not self._stop_requested and not self._polling
                     and not inp.cancelled and not inp.done and held == 1 and not self._handed
                     and self._pool is not None and self._pool.idle)
            if claim:
                self._polling = True
        if not claim:
            self._post([inp], [output])
            return None
        output["input_id"] = inp.input_id
        output["attempt"] = inp.attempt
        room = max(1, self._capacity() - held + 1)  # `inp` is about to leave
        try:
            answer = link.call("container.put_outputs", {"outputs": [output],
                                                         "next": {"max": room, "timeout": POLL_SECONDS}})
        except Exception:
            with self._lock:
                self._polling = False
            self._post([inp], [output])  # the loop's sender re-sends it (idempotent) and polls
            return None
        raws = answer.get("inputs") or [] if isinstance(answer, dict) else []
        job: Job | None = None
        with self._lock:
            self._polling = False
            mine = not inp.done  # (else a cancellation completed it meanwhile)
            inp.done = True
            try:
                if raws and not (self.stopping or self._stop_requested) and raws[0]["input_id"] not in self.held:
                    # The first input runs here; a burst's others go to the loop (and this thread
                    # takes them from its queue next, the loop's way, as a burst should go).
                    nxt = Input(raws[0])
                    target = self.service.target(nxt.method) if _known(self.service, nxt.method) else None
                    if target is not None and not (target.is_async or target.is_generator or target.batch):
                        self.held[nxt.input_id] = nxt  # before `inp` is released: held never looks empty
                        self._accepted += 1
                        job = (target, [nxt])
                        raws = raws[1:]
            except Exception:  # a malformed answer: the loop's `_accept` takes (and reports) it
                job = None
            if mine:
                self._unreleased += 1
            self._handed += len(raws)
        stop = isinstance(answer, dict) and bool(answer.get("stop"))
        self.loop.call_soon_threadsafe(self._directly_done, inp if mine else None, raws, stop)
        return job

    def _directly_done(self, inp: Input | None, raws: list[dict[str, Any]], stop: bool) -> None:
        """Loop: the bookkeeping of an output the worker thread sent itself, and what it left."""
        if inp is not None:
            if inp.ran:
                self._ewma = inp.ran if self._ewma is None else 0.8 * self._ewma + 0.2 * inp.ran
            with self._lock:
                self._release(inp)
                self._unreleased -= 1
        try:
            if raws and not self.stopping:
                self._accept(raws)
        finally:
            with self._lock:
                self._handed -= len(raws)
        if stop:
            self.stop()
        elif not self._rides():
            self._room.set()

    def _call_sync(self, target: Target, batch: list[Input]) -> list[dict[str, Any]]:
        try:
            args, kwargs = _call_args(target, batch)
            result = target.fn(*args, **kwargs)
            if target.is_generator:
                self._stream_sync(batch[0], result)
                return [_success(None) for _ in batch]
            if inspect.isawaitable(result):
                result = asyncio.run_coroutine_threadsafe(_await(result), self.loop).result()
            return _outputs(target, batch, result)
        except BaseException as exc:
            return [_failure(exc) for _ in batch]

    def _detach(self, batch: list[Input], ident: int) -> None:
        """No cancellation can reach this thread for `batch` after this returns."""
        with self._lock:
            for inp in batch:
                inp.thread_ident = None
            if any(inp.injected for inp in batch):
                _clear_async_exc(ident)

    def _stream_sync(self, inp: Input, gen: Any) -> None:
        stream = GenStream(self.rpc, inp.input_id, inp.attempt)
        self.loop.call_soon_threadsafe(setattr, inp, "stream", stream)
        if hasattr(gen, "__aiter__"):
            async def drain() -> None:
                async for item in gen:
                    stream.add(serialize(item, what="generator item"))
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result()
            return
        for item in gen:
            data = serialize(item, what="generator item")
            self.loop.call_soon_threadsafe(stream.add, data)

    def _post(self, batch: list[Input], outputs: list[dict[str, Any]]) -> None:
        """Hand a worker thread's outputs to the loop: one wake-up for all that finish before it runs."""
        with self._lock:
            self._finished.append((batch, outputs))
            if len(self._finished) > 1:
                return  # the loop is already due to take them
        self.loop.call_soon_threadsafe(self._complete_finished)

    def _complete_all(self, batch: list[Input], outputs: list[dict[str, Any]]) -> None:
        for inp, output in zip(batch, outputs, strict=True):
            self._complete(inp, output)

    def _complete_finished(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        with self.sender.holding():  # one put_outputs for the burst
            for batch, outputs in finished:
                for inp, output in zip(batch, outputs, strict=True):
                    self._complete(inp, output)

    def _complete(self, inp: Input, output: dict[str, Any]) -> None:
        if inp.done:
            return
        inp.done = True
        if inp.cancelled and output.get("status") != api.STATUS_TERMINATED:
            output = _terminated(inp)
        output["input_id"] = inp.input_id
        output["attempt"] = inp.attempt
        if inp.started and inp.job_size == 1:
            # A sync input's own run time: measured here it would include its wait for this loop
            # (behind the rest of its burst), and a no-op would look slow enough to prefetch less.
            took = inp.ran or time.monotonic() - inp.started
            self._ewma = took if self._ewma is None else 0.8 * self._ewma + 0.2 * took
        if inp.stream is not None:
            task = self.loop.create_task(self._after_stream(inp, inp.stream, output))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        self.sender.put(output)
        self._release(inp)

    async def _after_stream(self, inp: Input, stream: GenStream, output: dict[str, Any]) -> None:
        await stream.flush()
        self.sender.put(output)
        self._release(inp)

    def _release(self, inp: Input) -> None:
        self.held.pop(inp.input_id, None)
        self._room.set()
        if not self.held:
            self._drained.set()

    # -- cancellation ---------------------------------------------------------------------

    def cancel(self, input_ids: list[str]) -> None:
        for input_id in input_ids:
            inp = self.held.get(input_id)
            if inp is None or inp.done:
                continue
            with self._lock:
                inp.cancelled = True
                ident = inp.thread_ident
                interrupt = ident is not None and inp.job_size == 1
                if ident is not None and interrupt:
                    inp.injected = True
                    _inject(ident, InputCancellation)
            if inp.task is not None and inp.job_size == 1:
                inp.task.cancel()
            elif interrupt:
                self.loop.call_later(CANCEL_GRACE_SECONDS, self._check_interrupted, inp)
            else:
                # Queued, forming a batch, or part of a running batch: the others go on.
                self._complete(inp, _terminated(inp))

    def _check_interrupted(self, inp: Input) -> None:
        if inp.done:
            return
        print(f"skylift: input {inp.input_id} was cancelled but its thread did not stop within "
              f"{CANCEL_GRACE_SECONDS:.0f} s (it is blocked outside Python); the container exits",
              file=sys.stderr, flush=True)
        self._complete(inp, _terminated(inp))
        self.fatal = True
        self.exit_code = 1
        self.stopping = True
        self._fatal.set()


def _known(service: Service, method: str | None) -> bool:
    try:
        service.target(method)
    except Exception:
        return False  # the loop's `_accept` reports it
    return True


def _serves_web(definition: dict[str, Any]) -> bool:
    methods = definition.get("methods") or {}
    return bool(definition.get("web")) or (isinstance(methods, dict) and any(
        isinstance(m, dict) and m.get("web") for m in methods.values()))


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _batch_size(service: Service, definition: dict[str, Any]) -> int:
    batching = definition.get("batching")
    if batching:
        return max(1, int(batching["max_batch_size"]))
    if service.hooks is not None:
        sizes = [pf.max_batch_size for pf in service.hooks.methods.values() if pf.max_batch_size]
        if sizes:
            return max(sizes)
    return 1
