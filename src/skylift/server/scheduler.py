"""Schedules: `schedule=modal.Period(...)` and `modal.Cron(...)` on functions of deployed apps.

Decisions are pure (`next_run`, `due`) over a snapshot of each schedule's state; `Scheduler.tick`
applies them at a wall time read from an injected clock and starts each due run as a spawned
(durable) call with no arguments, so a run survives a control-plane restart like any `.spawn()`.

Policy (see docs/web.md, "Schedules"):
* A Period counts from the deploy: the first run is one period after it, and a redeploy restarts
  the count (Modal). A Cron doesn't care about deploys.
* Runs missed while the control plane was down (or while a run was due but the loop was late)
  are run **once** on restart, not once per missed slot; the series then continues from there.
* A paused schedule starts nothing; `resume` continues with the next slot after now (a pause
  never causes a burst of catch-up runs).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._protocol import ids
from .._protocol.rpc_server import Session
from ..schedule import next_fire_time
from .auth import Routes
from .execution.calls import Call
from .execution.catalog import AppState, FunctionEntry
from .http.web_store import ScheduleRecord
from .params import Params, invalid, not_found

if TYPE_CHECKING:
    from .control_plane import ControlPlane
    from .http.web_store import WebStore

log = logging.getLogger("skylift.server")

TICK_SECONDS = 0.25
NO_ARGS = pickle.dumps(((), {}), protocol=4)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def next_run(schedule: dict[str, Any], record: ScheduleRecord) -> float:
    """Wall time of the next run after the last one (or after the deploy, before the first)."""
    after = record.last_fire if record.last_fire is not None else record.anchor
    if schedule.get("kind") == "period":
        return next_fire_time(schedule, _dt(after), anchor=_dt(record.anchor)).timestamp()
    return next_fire_time(schedule, _dt(after)).timestamp()


def due(schedules: dict[str, dict[str, Any]], records: dict[str, ScheduleRecord], now: float) -> list[str]:
    """The function ids whose next run is at or before `now` (each runs once, however late)."""
    return [fid for fid, schedule in schedules.items()
            if fid in records and not records[fid].paused and next_run(schedule, records[fid]) <= now]


def describe(schedule: dict[str, Any]) -> str:
    if schedule.get("kind") == "cron":
        return f"cron {schedule.get('cron')!r} ({schedule.get('timezone', 'UTC')})"
    parts = [f"{schedule[k]:g} {k}" for k in ("years", "months", "weeks", "days", "hours", "minutes", "seconds")
             if schedule.get(k)]
    return "every " + ", ".join(parts)


class Scheduler:
    def __init__(self, cp: ControlPlane, store: WebStore, *, wall: Callable[[], float] = time.time) -> None:
        self.cp = cp
        self.store = store
        self.wall = wall
        self.records: dict[str, ScheduleRecord] = {}
        self._wake = asyncio.Event()

    def load(self) -> None:
        self.records = {r.function_id: r for r in self.store.list_schedules()}

    def routes(self) -> Routes:
        return {
            "schedule.list": self.list,
            "schedule.pause": self.pause,
            "schedule.resume": self.resume,
        }

    # ---- the loop ----------------------------------------------------------------------------

    def scheduled(self) -> dict[str, FunctionEntry]:
        """Live functions of deployed apps that have a schedule, by id."""
        found = {}
        for app in self.cp.catalog.apps.values():
            if app.state is not AppState.DEPLOYED or not app.function_ids:
                continue
            for fid in app.function_ids.values():
                function = self.cp.catalog.functions.get(fid)
                if function is not None and function.definition.get("schedule"):
                    found[fid] = function
        return found

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed; continuing")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            except asyncio.TimeoutError:
                pass

    async def tick(self) -> list[str]:
        """Bring records up to date with the deployed apps, then start every due run. Returns the
        function ids started."""
        now = self.wall()
        functions = self.scheduled()
        changed: list[ScheduleRecord] = []
        for fid, function in functions.items():
            record = self.records.get(fid)
            version = function.app.version
            kind = function.definition["schedule"].get("kind")
            if record is None:
                record = self.records[fid] = ScheduleRecord(fid, anchor=now, last_fire=None, version=version)
                changed.append(record)
            elif record.version != version:
                if kind == "period":  # a redeploy restarts a period's count (Modal)
                    record.anchor = now
                    record.last_fire = None
                record.version = version
                changed.append(record)
        started = due({fid: f.definition["schedule"] for fid, f in functions.items()}, self.records, now)
        for fid in started:
            self.records[fid].last_fire = now
            changed.append(self.records[fid])
        for record in changed:
            await self.cp.db.run(self.store.put_schedule, record)
        for fid in started:
            await self._fire(functions[fid])
        return started

    async def _fire(self, function: FunctionEntry) -> None:
        call = Call(ids.new_id("call"), function, self.cp.pools.get(function, None), kind="unary",
                    invocation="async", created_at=time.time())
        inputs = self.cp.dispatcher.make_inputs(call, [{"args": NO_ARGS}], "schedule")
        self.cp.calls.add(call)
        try:
            await self.cp.dispatcher.submit(call, inputs, first=True)
        except BaseException:
            self.cp.call_api.forget(call)
            raise
        self.cp.logs.system(function.app.app_id, "", function.tag,
                            f"schedule: started {function.tag} ({call.call_id})")

    # ---- the API -----------------------------------------------------------------------------

    def _entry(self, function: FunctionEntry) -> dict[str, Any]:
        schedule = function.definition["schedule"]
        record = self.records.get(function.function_id)
        nxt = None
        if record is not None and not record.paused:
            nxt = next_run(schedule, record)
        return {"app_name": function.app.name, "tag": function.tag, "function_id": function.function_id,
                "schedule": schedule, "description": describe(schedule), "next_run": nxt,
                "last_run": record.last_fire if record else None, "paused": bool(record and record.paused)}

    async def list(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("schedule.list", raw)
        environment = p.environment()
        app_name = p.opt_text("app_name")
        await self.tick()  # records for apps deployed since the last tick
        entries = [self._entry(f) for f in self.scheduled().values()
                   if f.app.environment == environment and (app_name is None or f.app.name == app_name)]
        entries.sort(key=lambda e: (e["app_name"] or "", e["tag"]))
        return {"schedules": entries}

    def _find(self, method: str, raw: dict[str, Any]) -> FunctionEntry:
        p = Params(method, raw)
        app_name = p.text("app_name")
        tag = p.text("tag")
        environment = p.environment()
        app = self.cp.catalog.find_deployed(app_name, environment)
        if app is None:
            raise not_found(f"no deployed app named {app_name!r} in environment {environment!r}")
        fid = app.function_ids.get(tag)
        function = self.cp.catalog.functions.get(fid) if fid else None
        if function is None:
            raise not_found(f"app {app_name!r} has no function {tag!r}")
        if not function.definition.get("schedule"):
            raise invalid(method, f"{app_name}.{tag} has no schedule (give it schedule=modal.Period(...) or "
                                  "modal.Cron(...) and deploy)")
        return function

    async def _set_paused(self, method: str, raw: dict[str, Any], paused: bool) -> dict[str, Any]:
        function = self._find(method, raw)
        await self.tick()
        record = self.records[function.function_id]
        if record.paused != paused:
            record.paused = paused
            if not paused:  # continue with the next slot after now, without catching up
                record.last_fire = max(record.last_fire or record.anchor, self.wall())
            await self.cp.db.run(self.store.put_schedule, record)
            self.cp.logs.system(function.app.app_id, "", function.tag,
                                f"schedule of {function.tag} {'paused' if paused else 'resumed'}")
        self._wake.set()
        return self._entry(function)

    async def pause(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        return await self._set_paused("schedule.pause", raw, True)

    async def resume(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        return await self._set_paused("schedule.resume", raw, False)
