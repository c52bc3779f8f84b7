"""The autoscaler's decisions, as tables: (pool, policy, now) -> decision."""

from __future__ import annotations

import pytest

from skylift.server.autoscaler import ContainerView, Decision, Policy, PoolSnapshot, desired_containers

NOW = 1000.0


def busy(task_id: str, n: int = 1) -> ContainerView:
    return ContainerView(task_id, running_inputs=n)


def idle(task_id: str, for_seconds: float) -> ContainerView:
    return ContainerView(task_id, idle_since=NOW - for_seconds)


def starting(task_id: str) -> ContainerView:
    return ContainerView(task_id, starting=True, idle_since=NOW)


CASES = [
    # (description, pool, policy, expected)
    ("nothing to do, nothing running", PoolSnapshot(), Policy(), Decision(0)),
    ("scale from zero on demand", PoolSnapshot(backlog=1), Policy(), Decision(1, to_start=1)),
    ("one container per input by default", PoolSnapshot(backlog=5), Policy(), Decision(5, to_start=5)),
    ("concurrency slots divide the need", PoolSnapshot(backlog=5), Policy(slots=2), Decision(3, to_start=3)),
    ("exact multiple of slots", PoolSnapshot(backlog=8), Policy(slots=4), Decision(2, to_start=2)),
    ("max_containers caps", PoolSnapshot(backlog=50), Policy(max_containers=3), Decision(3, to_start=3)),
    ("max_containers=0 runs nothing", PoolSnapshot(backlog=2), Policy(max_containers=0), Decision(0)),
    ("running inputs count as demand",
     PoolSnapshot(backlog=1, containers=(busy("a"),)), Policy(), Decision(2, to_start=1)),
    ("starting containers count as capacity",
     PoolSnapshot(backlog=2, containers=(starting("a"), starting("b"))), Policy(), Decision(2)),
    ("a starting container is not started twice",
     PoolSnapshot(backlog=1, containers=(starting("a"),)), Policy(), Decision(1)),
    ("busy with spare slots: no new container",
     PoolSnapshot(backlog=1, containers=(busy("a", 1),)), Policy(slots=4), Decision(1)),
    ("min_containers without traffic", PoolSnapshot(), Policy(min_containers=2), Decision(2, to_start=2)),
    ("min_containers is a floor, not added",
     PoolSnapshot(backlog=3), Policy(min_containers=2), Decision(3, to_start=3)),
    ("min_containers above max is capped", PoolSnapshot(), Policy(min_containers=5, max_containers=2),
     Decision(2, to_start=2)),
    ("buffer while active",
     PoolSnapshot(backlog=2), Policy(buffer_containers=1), Decision(3, to_start=3)),
    ("buffer stays while recently active",
     PoolSnapshot(containers=(idle("a", 5),), last_active=NOW - 5), Policy(buffer_containers=1), Decision(1)),
    ("no buffer for a pool idle past the window",
     PoolSnapshot(last_active=NOW - 100), Policy(buffer_containers=2, scaledown_window=60), Decision(0)),
    ("buffer respects max_containers",
     PoolSnapshot(backlog=2), Policy(buffer_containers=5, max_containers=4), Decision(4, to_start=4)),
    ("idle past the window: stopped",
     PoolSnapshot(containers=(idle("a", 61),)), Policy(scaledown_window=60), Decision(0, to_stop=("a",))),
    ("idle within the window: kept",
     PoolSnapshot(containers=(idle("a", 59),)), Policy(scaledown_window=60), Decision(0)),
    ("idle exactly the window: stopped",
     PoolSnapshot(containers=(idle("a", 60),)), Policy(scaledown_window=60), Decision(0, to_stop=("a",))),
    ("never below min_containers",
     PoolSnapshot(containers=(idle("a", 500), idle("b", 500))), Policy(min_containers=1),
     Decision(1, to_stop=("a",))),
    ("longest idle goes first",
     PoolSnapshot(containers=(idle("new", 70), idle("old", 300), idle("mid", 100))),
     Policy(min_containers=1, scaledown_window=60), Decision(1, to_stop=("old", "mid"))),
    ("busy containers are never stopped",
     PoolSnapshot(containers=(busy("a"), idle("b", 500))), Policy(), Decision(1, to_stop=("b",))),
    ("starting containers are never stopped",
     PoolSnapshot(containers=(starting("a"),)), Policy(), Decision(0)),
    ("over max (lowered at runtime): only idle ones go",
     PoolSnapshot(containers=(busy("a"), busy("b"), idle("c", 500))), Policy(max_containers=1),
     Decision(1, to_stop=("c",))),
    ("scale-down waits for the window even over target",
     PoolSnapshot(containers=(idle("a", 10), idle("b", 10))), Policy(), Decision(0)),
    ("backlog with idle containers: they take it, nothing new",
     PoolSnapshot(backlog=1, containers=(idle("a", 1),)), Policy(), Decision(1)),
    ("a demand bigger than slots x containers, with starting ones",
     PoolSnapshot(backlog=7, containers=(starting("a"), busy("b", 2))), Policy(slots=2), Decision(5, to_start=3)),
]


@pytest.mark.parametrize(("pool", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_desired_containers(pool: PoolSnapshot, policy: Policy, expected: Decision) -> None:
    assert desired_containers(pool, policy, NOW) == expected


@pytest.mark.parametrize("backlog", range(0, 30))
@pytest.mark.parametrize("slots", [1, 2, 3, 8])
@pytest.mark.parametrize("max_containers", [None, 0, 1, 4])
@pytest.mark.parametrize("buffer", [0, 1, 3])
def test_start_count_invariants(backlog: int, slots: int, max_containers: int | None, buffer: int) -> None:
    policy = Policy(slots=slots, max_containers=max_containers, buffer_containers=buffer)
    decision = desired_containers(PoolSnapshot(backlog=backlog), policy, NOW)
    assert decision.to_stop == ()
    assert decision.to_start == decision.target
    if max_containers is not None:
        assert decision.target <= max_containers
    enough = -(-backlog // slots) + (buffer if backlog else 0)
    assert decision.target == (enough if max_containers is None else min(enough, max_containers))
    if backlog and max_containers != 0:
        assert decision.target * slots >= min(backlog, (max_containers or backlog) * slots)


def test_slots_below_one_mean_one() -> None:
    assert desired_containers(PoolSnapshot(backlog=3), Policy(slots=0), NOW) == Decision(3, to_start=3)
