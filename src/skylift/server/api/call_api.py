"""The `call.*` methods: how callers submit inputs and collect outputs.

`call.run` is the `.remote()` fast path: enqueue, wait for the output, answer, in one round
trip and without touching the store. `.map()` streams inputs (`call.start` + `call.put_inputs`)
and collects outputs in batches (`call.get_outputs`). Async calls (`.spawn()`) are durable before
`call.start` answers and can be read back later with `clear=False`.

Every way in takes an idempotency key (docs/exactly-once.md): a caller that re-sends `call.start`,
`call.run`, a `call.put_inputs` batch or a `call.get_outputs` poll after losing the answer gets
the first answer again and nothing is created twice.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..._protocol import api, ids
from ..._protocol.rpc import ErrorCode, RpcError
from ..._protocol.rpc_server import Session, eager
from ..auth import Routes
from ..execution.calls import INVOCATIONS, KINDS, Call
from ..execution.catalog import AppState, FunctionEntry
from ..execution.idempotency import MAX_KEY_LENGTH, Keys, Remembered, scoped
from ..execution.recovery import recover_call
from ..longpoll import Deadline
from ..params import Params, invalid, not_found

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

log = logging.getLogger("skylift.server")

MAX_OUTPUTS = 50_000
MAX_GEN_ITEMS = 1_000


def _retryable(exc: BaseException, what: str) -> RpcError | None:
    """A store failure as UNAVAILABLE: nothing was stored, and the SDK re-sends the (keyed) request."""
    if isinstance(exc, (sqlite3.Error, OSError)):
        return RpcError(ErrorCode.UNAVAILABLE, f"{what}: the control plane's store failed ({exc}); "
                                               "nothing was stored, send it again")
    return None


def expired_output(call_id: str) -> dict[str, Any]:
    return {"index": 0, "input_id": "", "status": api.STATUS_EXPIRED,
            "exc_message": f"the results of call {call_id} have expired (they are kept "
                           f"{api.OUTPUT_TTL_SECONDS // 86400} days)"}


class CallApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.keys = Keys()

    def routes(self) -> Routes:
        return {
            "call.start": self.start,
            "call.run": self.run,
            "call.put_inputs": self.put_inputs,
            "call.close_inputs": self.close_inputs,
            "call.get_outputs": self.get_outputs,
            "call.get_gen_items": self.get_gen_items,
            "call.cancel": self.cancel,
            "call.info": self.info,
        }

    # ---- helpers ------------------------------------------------------------------------------

    async def _callable(self, function_id: str) -> FunctionEntry:
        function = self.cp.catalog.functions.get(function_id)
        if function is None:
            function = await self.cp.catalog.function(function_id)
        app = function.app
        if not app.running:
            raise not_found(f"function {function.tag!r} can't be called: {app.label} is stopped")
        retired = app.function_ids and function.function_id not in app.function_ids.values()
        if app.state is AppState.DEPLOYED and retired:
            raise not_found(f"function {function.tag!r} is no longer part of {app.label} (removed by a redeploy)")
        if function.request.gpus or function.request.labels:
            reason = self.cp.scaler.unplaceable(function)
            if reason is not None:
                raise RpcError(ErrorCode.RESOURCE_EXHAUSTED, f"can't run {function.tag!r}: {reason}")
        return function

    def _call(self, call_id: str) -> Call:
        call = self.cp.calls.get(call_id)
        if call is None:
            raise not_found(f"no open call {call_id!r}")
        return call

    def _adopt(self, call: Call, session: Session) -> None:
        """A sync call belongs to the connection polling it; if that goes away, the call is orphaned."""
        if call.durable:
            return
        call.orphaned_since = None
        if call.owner is not session:
            call.owner = session
            owned: set[Call] = session.info.setdefault("calls", set())
            owned.add(call)

    @staticmethod
    def _key(p: Params) -> str | None:
        key = p.opt_text("idempotency_key")
        if key is not None and not 0 < len(key) <= MAX_KEY_LENGTH:
            raise invalid(p.method, f"idempotency_key must be 1 to {MAX_KEY_LENGTH} characters (got {len(key)})")
        return key

    def forget(self, call: Call) -> None:
        self.cp.calls.forget(call)
        if call.owner is not None:
            owned = getattr(call.owner, "info", {}).get("calls")
            if owned is not None:
                owned.discard(call)

    # ---- starting -----------------------------------------------------------------------------

    async def start(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("call.start", raw)
        function_id = p.text("function_id")
        params = p.opt_blob("params")
        items = p.items("inputs")
        invocation = p.choice("invocation", INVOCATIONS, "sync")
        kind = p.choice("kind", KINDS, "unary")
        parent = p.opt_text("parent_input_id")
        more = p.flag("more_inputs")
        if kind != "map" and (more or len(items) != 1):
            raise invalid("call.start", f"a {kind} call takes exactly one input (got {len(items)})")
        key = self._key(p)
        function = await self._callable(function_id)

        def new_call() -> Call:
            return Call(ids.new_id("call"), function, self.cp.pools.get(function, params), kind=kind,
                        invocation=invocation, created_at=time.time(), parent_input_id=parent, closed=not more)

        if key is not None:
            # Shielded: a caller that hangs up mid-way doesn't cut the work in two (stored, then
            # forgotten); its retry finds the call by the key.
            return await asyncio.shield(self._keyed_start(session, scoped("call.start", function_id, key),
                                                          new_call, items, durable=invocation == "async"))
        call = new_call()
        if call.durable:
            return await asyncio.shield(self._start(session, call, items, None))
        return await self._start(session, call, items, None)

    async def _keyed_start(self, session: Session, key: str, new_call: Callable[[], Call], items: list[Any], *,
                           durable: bool) -> dict[str, Any]:
        while (seen := self.keys.get(key, self.cp.clock.now())) is not None:
            await seen.wait()  # the first request with this key may still be storing its call
            if seen.answer is not None:
                if seen.call is not None and self.cp.calls.get(seen.call.call_id) is seen.call:
                    self._adopt(seen.call, session)  # the caller is back, on a new connection
                return dict(seen.answer)
        entry = self.keys.begin(key, self.cp.clock.now())
        answer: dict[str, Any] | None = None
        try:
            if durable:  # maybe stored before a restart, or by a write reported as failed
                answer = await self._stored_start(key, len(items))
            if answer is None:
                call = new_call()
                answer = await self._start(session, call, items, key)
                entry.call = None if call.durable else call
        finally:
            self.keys.finish(key, entry, answer)
        return dict(answer)

    async def _start(self, session: Session, call: Call, items: list[Any], key: str | None) -> dict[str, Any]:
        inputs = self.cp.dispatcher.make_inputs(call, items, "call.start")
        self._adopt(call, session)
        self.cp.calls.add(call)
        try:
            await self.cp.dispatcher.submit(call, inputs, first=True, key=key)
        except BaseException as exc:
            if not (call.durable and await self._stored_call(call)):
                self.forget(call)
                if (retry := _retryable(exc, f"call {call.call_id} was not started")) is not None:
                    raise retry from exc
                raise
            self.cp.dispatcher.enqueue(call, inputs)  # stored, though the store reported a failure
        return {"call_id": call.call_id, "input_ids": [i.input_id for i in inputs]}

    async def _stored_start(self, key: str, n_inputs: int) -> dict[str, Any] | None:
        """The answer to a durable call.start whose call the store holds under `key`, if any."""
        store = self.cp.db.store
        call_id = await self.cp.db.run(store.call_for_key, key)
        if call_id is None:
            return None
        call = self.cp.calls.get(call_id)
        if call is None:
            await recover_call(self.cp, call_id)
            call = self.cp.calls.get(call_id)
        if call is not None and all(call.input_ids[:n_inputs]):
            input_ids = call.input_ids[:n_inputs]
        else:
            input_ids = await self.cp.db.run(store.input_ids, call_id, 0, n_inputs)
        return {"call_id": call_id, "input_ids": input_ids}

    @eager  # hot: started in data_received (rpc_server.eager)
    async def run(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("call.run", raw)
        function_id = p.text("function_id")
        params = p.opt_blob("params")
        item = p.mapping("input")
        deadline = Deadline(p.timeout(default=api.MAX_POLL_SECONDS))
        parent = p.opt_text("parent_input_id")
        key = self._key(p)
        function = await self._callable(function_id)
        if key is not None:
            key = scoped("call.run", function_id, key)
            seen = self.keys.get(key, self.cp.clock.now())
            if seen is not None and seen.answer is not None:  # a re-sent .remote(): the first call's output
                if seen.output is not None:
                    return {**seen.answer, "output": seen.output}
                if seen.call is not None:
                    if self.cp.calls.get(seen.call.call_id) is seen.call:
                        self._adopt(seen.call, session)
                    return await self._run_output(seen.call, deadline, seen)
        call = Call(ids.new_id("call"), function, self.cp.pools.get(function, params), kind="unary",
                    invocation="sync", created_at=time.time(), parent_input_id=parent)
        inputs = self.cp.dispatcher.make_inputs(call, [item], "call.run")
        self._adopt(call, session)
        self.cp.calls.add(call)
        self.cp.dispatcher.enqueue(call, inputs)
        entry = None
        if key is not None:
            entry = self.keys.begin(key, self.cp.clock.now())
            entry.call = call  # a repeat waits on it; once finished, the key keeps only its output
            self.keys.finish(key, entry, {"call_id": call.call_id})
        return await self._run_output(call, deadline, entry)

    async def _run_output(self, call: Call, deadline: Deadline, entry: Remembered | None) -> dict[str, Any]:
        while not call.finished:
            if not await call.signal.wait(deadline.remaining()):
                break
        if not call.finished or call.final_output is None:
            return {"call_id": call.call_id}
        call.ready.clear()
        self.forget(call)
        if entry is not None:
            entry.output, entry.call = call.final_output, None
        return {"call_id": call.call_id, "output": call.final_output}

    @eager  # hot: started in data_received (rpc_server.eager)
    async def put_inputs(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("call.put_inputs", raw)
        call = self._call(p.text("call_id"))
        items = p.items("inputs")
        start = p.integer("start_index", minimum=0)
        if not call.durable:
            return await self._put_inputs(call, items, start)
        # Shielded: a batch being stored when its caller hangs up is stored and queued all the same.
        return await asyncio.shield(self._put_durable_inputs(call, items, start))

    async def _put_durable_inputs(self, call: Call, items: list[Any], start: int) -> dict[str, Any]:
        # A re-sent batch may arrive while the first is being stored: one batch at a time, so the
        # second sees the first's inputs (and isn't answered before they are stored).
        if call.feed_lock is None:
            call.feed_lock = asyncio.Lock()
        async with call.feed_lock:
            return await self._put_inputs(call, items, start)

    async def _put_inputs(self, call: Call, items: list[Any], start: int) -> dict[str, Any]:
        have = call.n_inputs
        if call.cancelled:
            raise RpcError(ErrorCode.CANCELLED, f"call {call.call_id} was cancelled")
        if start > have:
            raise invalid("call.put_inputs", f"start_index is {start} but call {call.call_id} has {have} inputs; "
                                             "send the missing ones first")
        fresh = items[have - start:]  # a retried batch may overlap what already arrived
        if fresh and call.closed:
            raise invalid("call.put_inputs", f"call {call.call_id} is closed; it takes no more inputs")
        inputs = self.cp.dispatcher.make_inputs(call, fresh, "call.put_inputs")
        try:
            await self.cp.dispatcher.submit(call, inputs, first=False)
        except BaseException as exc:
            if not (call.durable and await self._stored_inputs(call, have, inputs)):
                del call.input_ids[have:]  # not stored: a retry of this batch adds them again
                if (retry := _retryable(exc, f"inputs {have}.. of call {call.call_id} were not added")) is not None:
                    raise retry from exc
                raise
            self.cp.dispatcher.enqueue(call, inputs)  # stored, though the store reported a failure
        return {"input_ids": call.input_ids[start:start + len(items)]}

    async def _stored_call(self, call: Call) -> bool:
        """Whether a call whose insert reported failure committed all the same (with its inputs and key)."""
        try:
            return await self.cp.db.run(self.cp.db.store.get_call, call.call_id) is not None
        except Exception:
            return False

    async def _stored_inputs(self, call: Call, start: int, inputs: list[Any]) -> bool:
        """Whether a write of `inputs` that reported failure committed all the same (a lost acknowledgement)."""
        try:
            stored = await self.cp.db.run(self.cp.db.store.input_ids, call.call_id, start, len(inputs) + 1)
        except Exception:
            return False
        return bool(inputs) and stored == [i.input_id for i in inputs]

    async def close_inputs(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("call.close_inputs", raw)
        call = self._call(p.text("call_id"))
        total = p.integer("total", minimum=0)
        if call.closed:
            return {}
        if total != call.n_inputs:
            raise invalid("call.close_inputs", f"total is {total} but call {call.call_id} received "
                                               f"{call.n_inputs} inputs")
        await self.close(call)
        return {}

    async def close(self, call: Call) -> None:
        """No more inputs: the call is done once those it has are."""
        if call.closed:
            return
        call.closed = True
        if call.durable:
            store = self.cp.db.store
            try:
                await self.cp.db.run(store.close_call, call.call_id, call.n_inputs)
            except Exception as exc:
                rec = await self.cp.db.run(store.get_call, call.call_id)
                if rec is None or not rec.closed:
                    call.closed = False  # not stored: a retry closes it
                    if (retry := _retryable(exc, f"call {call.call_id} was not closed")) is not None:
                        raise retry from exc
                    raise
            if call.finished:
                try:
                    await self.cp.db.run(store.record_outputs, [], [(call.call_id, call.state(), time.time())])
                except Exception:  # its outputs are stored: a restart marks it finished
                    log.exception("could not mark call %s finished", call.call_id)
        if call.finished:
            call.finished_at = self.cp.clock.now()
        call.signal.notify()

    # ---- collecting ---------------------------------------------------------------------------

    @eager  # hot: started in data_received (rpc_server.eager)
    async def get_outputs(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("call.get_outputs", raw)
        call_id = p.text("call_id")
        deadline = Deadline(p.timeout())
        limit = min(p.integer("max", MAX_OUTPUTS, minimum=1), MAX_OUTPUTS)
        clear = p.flag("clear")
        start = p.integer("start_index", 0, minimum=0)
        key = self._key(p) if clear else None
        call = self.cp.calls.get(call_id)
        if call is None:
            return await self._stored_outputs(call_id, start, limit)
        self._adopt(call, session)
        if key is not None and call.last_take is not None and call.last_take[0] == key:
            # The answer to this poll was lost: the same outputs again (a new key acknowledges them).
            return {"outputs": call.last_take[1], "done": call.finished and not call.ready}
        while True:
            outputs, done = self._take(call, clear, limit, start)
            if outputs or done or deadline.remaining() <= 0:
                break
            await call.signal.wait(deadline.remaining())
        if key is not None:
            call.last_take = (key, outputs)
        elif done and clear and not call.durable:
            self.forget(call)  # with a key, it stays (finished_call_memory) for a re-sent last poll
        return {"outputs": outputs, "done": done}

    @staticmethod
    def _take(call: Call, clear: bool, limit: int, start: int) -> tuple[list[dict[str, Any]], bool]:
        if clear:
            ready = call.ready
            n = min(limit, len(ready))
            outputs = [ready.popleft() for _ in range(n)]
            return outputs, call.finished and not ready
        source = call.kept if call.kept is not None else {o["index"]: o for o in call.ready}
        indices = sorted(i for i in source if i >= start)
        outputs = [source[i] for i in indices[:limit]]
        return outputs, call.finished and len(indices) <= limit

    async def _stored_outputs(self, call_id: str, start: int, limit: int) -> dict[str, Any]:
        store = self.cp.db.store
        rec = await self.cp.db.run(store.get_call, call_id)
        if rec is None:
            raise not_found(f"no call {call_id!r} (results of spawned calls are kept "
                            f"{api.OUTPUT_TTL_SECONDS // 86400} days; sync calls only while their caller waits)")
        if rec.state == "expired":
            return {"outputs": [expired_output(call_id)], "done": True}
        rows = await self.cp.db.run(store.get_outputs, call_id, start, limit + 1)
        return {"outputs": [r.output for r in rows[:limit]], "done": len(rows) <= limit}

    async def get_gen_items(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("call.get_gen_items", raw)
        call = self._call(p.text("call_id"))
        start = p.integer("start", 0, minimum=0)
        deadline = Deadline(p.timeout())
        self._adopt(call, session)
        while len(call.gen_items) <= start and not call.finished and deadline.remaining() > 0:
            await call.signal.wait(deadline.remaining())
        items = call.gen_items[start:start + MAX_GEN_ITEMS]
        nxt = start + len(items)
        done = call.finished and nxt >= len(call.gen_items)
        answer: dict[str, Any] = {"items": items, "next": nxt, "done": done}
        if done:
            if call.final_output is not None:
                answer["output"] = call.final_output
            if not call.durable:
                self.forget(call)
        return answer

    # ---- control ------------------------------------------------------------------------------

    async def cancel(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("call.cancel", raw)
        call_id = p.text("call_id")
        terminate = p.flag("terminate_containers")
        call = self.cp.calls.get(call_id)
        if call is None:
            if await self.cp.db.run(self.cp.db.store.get_call, call_id) is None:
                raise not_found(f"no call {call_id!r}")
            return {}  # already finished
        if not call.finished:
            self.cp.dispatcher.cancel(call, terminate_containers=terminate)
        return {}

    async def info(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("call.info", raw)
        call_id = p.text("call_id")
        call = self.cp.calls.get(call_id)
        if call is not None:
            return {"call_id": call_id, "function_id": call.function.function_id, "state": call.state(),
                    "num_inputs": call.n_inputs, "created_at": call.created_at}
        rec = await self.cp.db.run(self.cp.db.store.get_call, call_id)
        if rec is None:
            raise not_found(f"no call {call_id!r}")
        return {"call_id": call_id, "function_id": rec.function_id, "state": rec.state,
                "num_inputs": rec.num_inputs, "created_at": rec.created_at}
