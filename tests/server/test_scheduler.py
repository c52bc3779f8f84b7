"""Schedules: the pure decisions, and the scheduler of a real control plane with a hand-moved wall clock."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import definition
from skylift._protocol.rpc import RpcError
from skylift.schedule import Cron, Period
from skylift.server.http.web_store import ScheduleRecord
from skylift.server.scheduler import due, next_run

T0 = 1_700_000_000.0  # a Tuesday, 22:13:20 UTC


def test_period_counts_from_the_anchor() -> None:
    wire = Period(minutes=10)._to_wire()
    record = ScheduleRecord("fu-1", anchor=T0, last_fire=None)
    assert next_run(wire, record) == T0 + 600
    record.last_fire = T0 + 605  # a late run doesn't shift the series
    assert next_run(wire, record) == T0 + 1200


def test_missed_runs_run_once() -> None:
    wire = Period(seconds=10)._to_wire()
    records = {"fu-1": ScheduleRecord("fu-1", anchor=T0, last_fire=T0 + 10)}
    assert due({"fu-1": wire}, records, T0 + 3600) == ["fu-1"]  # 359 slots missed: one run
    records["fu-1"].last_fire = T0 + 3600
    assert due({"fu-1": wire}, records, T0 + 3601) == []
    assert next_run(wire, records["fu-1"]) == T0 + 3610


def test_cron_ignores_the_anchor_and_paused_never_runs() -> None:
    wire = Cron("0 8 * * 1")._to_wire()  # Mondays at 8:00 UTC
    record = ScheduleRecord("fu-1", anchor=T0, last_fire=None)
    monday = 1_700_467_200.0  # Monday 2023-11-20 08:00 UTC
    assert next_run(wire, record) == monday
    assert due({"fu-1": wire}, {"fu-1": record}, monday - 1) == []
    assert due({"fu-1": wire}, {"fu-1": record}, monday) == ["fu-1"]
    record.paused = True
    assert due({"fu-1": wire}, {"fu-1": record}, monday + 86400 * 30) == []


class Wall:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _deploy(client: Any, name: str, *defs: dict[str, Any]) -> dict[str, str]:
    app_id = (await client.call("app.deploy_begin", {"name": name, "environment": "main"}))["app_id"]
    ids = {d["tag"]: (await client.call("function.create", {"app_id": app_id, "definition": d}))["function_id"]
           for d in defs}
    await client.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": ids})
    return ids


def _manual(cp: Any, now: float) -> Wall:
    """Drive the scheduler by hand: stop its loop and give it a wall clock that moves when told."""
    for task in cp._loops:
        if task.get_name() == "skylift-scheduler":
            task.cancel()
    wall = Wall(now)
    cp.scheduler.wall = wall
    return wall


def _runs(cp: Any, function_id: str) -> int:
    return sum(1 for call in cp.calls.calls.values() if call.function.function_id == function_id)


async def test_scheduler_runs_pauses_resumes_and_resets_on_redeploy(platform: Any) -> None:
    async with platform() as h:
        wall = _manual(h.cp, T0)
        client = await h.client()
        every_minute = definition("tick", schedule=Period(minutes=1)._to_wire())
        ids = await _deploy(client, "sched", every_minute, definition("plain"))
        fid = ids["tick"]
        assert await h.cp.scheduler.tick() == []  # the deploy starts the count
        wall.now = T0 + 59
        assert await h.cp.scheduler.tick() == []
        wall.now = T0 + 60
        assert await h.cp.scheduler.tick() == [fid]
        assert _runs(h.cp, fid) == 1
        listed = (await client.call("schedule.list", {"environment": "main"}))["schedules"]
        assert [(s["tag"], s["next_run"], s["last_run"], s["paused"]) for s in listed] == [
            ("tick", T0 + 120, T0 + 60, False)]
        assert listed[0]["description"] == "every 1 minutes"

        await client.call("schedule.pause", {"app_name": "sched", "tag": "tick", "environment": "main"})
        wall.now = T0 + 600
        assert await h.cp.scheduler.tick() == []
        resumed = await client.call("schedule.resume", {"app_name": "sched", "tag": "tick", "environment": "main"})
        assert resumed["next_run"] == T0 + 660  # no burst of the runs missed while paused
        assert await h.cp.scheduler.tick() == []

        wall.now = T0 + 630
        await _deploy(client, "sched", dict(every_minute, timeout=10), definition("plain"))
        await h.cp.scheduler.tick()
        entry = (await client.call("schedule.list", {"environment": "main", "app_name": "sched"}))["schedules"][0]
        assert entry["next_run"] == T0 + 690  # a redeploy restarts a Period from the deploy

        with pytest.raises(RpcError, match="has no schedule"):
            await client.call("schedule.pause", {"app_name": "sched", "tag": "plain", "environment": "main"})


async def test_runs_missed_while_down_run_once_after_a_restart(platform: Any) -> None:
    async with platform() as h:
        _manual(h.cp, T0)
        client = await h.client()
        fid = (await _deploy(client, "nightly", definition("job", schedule=Period(seconds=30)._to_wire())))["job"]
        await h.cp.scheduler.tick()
    async with platform() as h:
        _manual(h.cp, T0 + 3600)  # down for an hour: 120 runs missed
        assert await h.cp.scheduler.tick() == [fid]
        assert await h.cp.scheduler.tick() == []
        assert _runs(h.cp, fid) == 1
