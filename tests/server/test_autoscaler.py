"""The autoscaler's decisions, as tables: (pool, policy, now) -> decision.

Cases written before scaling out weighed start-up cost started one container per queued input at
once, with nothing measured; those that only did so to test slots, min, max or buffer now give the
pool a measured long backlog (`SLOW`) and ready containers, so they test the same rule.
"""

from __future__ import annotations

import pytest

from skylift.server.policy.autoscaler import ContainerView, Decision, Policy, PoolSnapshot, desired_containers

NOW = 1000.0


def busy(task_id: str, n: int = 1) -> ContainerView:
    return ContainerView(task_id, running_inputs=n)


def idle(task_id: str, for_seconds: float) -> ContainerView:
    return ContainerView(task_id, idle_since=NOW - for_seconds)


def starting(task_id: str) -> ContainerView:
    return ContainerView(task_id, starting=True, idle_since=NOW)


def busy_pool(n: int, slots: int = 1) -> tuple[ContainerView, ...]:
    return tuple(busy(f"r{i}", slots) for i in range(n))


# Observed: nothing completes within the window (long inputs), containers take 0.5 s to start.
SLOW = {"drain_rate": 0.0, "cold_start": 0.5}


CASES = [
    # (description, pool, policy, expected)
    ("nothing to do, nothing running", PoolSnapshot(), Policy(), Decision(0)),
    ("scale from zero on demand", PoolSnapshot(backlog=1), Policy(), Decision(1, to_start=1)),
    # Was "one container per input by default" (5 at once): that is the overshoot this module now avoids.
    ("nothing measured: the first call starts one", PoolSnapshot(backlog=5), Policy(), Decision(1, to_start=1)),
    ("concurrency slots divide the need",
     PoolSnapshot(backlog=3, containers=busy_pool(2, 2), **SLOW), Policy(slots=2), Decision(4, to_start=2)),
    ("exact multiple of slots",
     PoolSnapshot(backlog=4, containers=busy_pool(2, 4), **SLOW), Policy(slots=4), Decision(3, to_start=1)),
    ("max_containers caps",
     PoolSnapshot(backlog=50, containers=busy_pool(2), **SLOW), Policy(max_containers=3), Decision(3, to_start=1)),
    ("max_containers=0 runs nothing", PoolSnapshot(backlog=2), Policy(max_containers=0), Decision(0)),
    ("running inputs count as demand",
     PoolSnapshot(backlog=1, containers=(busy("a"),), **SLOW), Policy(), Decision(2, to_start=1)),
    ("starting containers count as capacity",
     PoolSnapshot(backlog=2, containers=(starting("a"), starting("b"))), Policy(), Decision(2)),
    ("a starting container is not started twice",
     PoolSnapshot(backlog=1, containers=(starting("a"),)), Policy(), Decision(1)),
    ("busy with spare slots: no new container",
     PoolSnapshot(backlog=1, containers=(busy("a", 1),)), Policy(slots=4), Decision(1)),
    ("min_containers without traffic", PoolSnapshot(), Policy(min_containers=2), Decision(2, to_start=2)),
    ("min_containers is a floor, not added",
     PoolSnapshot(backlog=1, containers=busy_pool(2), **SLOW), Policy(min_containers=2), Decision(3, to_start=1)),
    ("min_containers above max is capped", PoolSnapshot(), Policy(min_containers=5, max_containers=2),
     Decision(2, to_start=2)),
    ("buffer while active",
     PoolSnapshot(backlog=2, containers=busy_pool(2), **SLOW), Policy(buffer_containers=1), Decision(5, to_start=3)),
    ("buffer on top of the first container", PoolSnapshot(backlog=2), Policy(buffer_containers=1),
     Decision(2, to_start=2)),
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
     PoolSnapshot(backlog=7, containers=(starting("a"), busy("b", 2), busy("c", 2)), **SLOW), Policy(slots=2),
     Decision(4, to_start=1)),
]

# Scaling out against the observed drain rate and cold start (issue 10: a 200-input trivial map
# started 13-17 containers, most after the work was done).
COST_CASES = [
    ("a starting first container: nothing more until it shows its speed",
     PoolSnapshot(backlog=200, containers=(starting("a"),)), Policy(), Decision(1)),
    ("ready, but no rate yet: hold",
     PoolSnapshot(backlog=200, containers=(busy("a"),), cold_start=0.2), Policy(), Decision(1)),
    ("trivial map: the queue is empty before a new container would arrive",
     PoolSnapshot(backlog=199, containers=(busy("a"),), drain_rate=5000.0, cold_start=0.2), Policy(),
     Decision(1)),
    ("100-input trivial map on a slow container runtime",
     PoolSnapshot(backlog=99, containers=(busy("a"),), drain_rate=400.0, cold_start=0.3), Policy(), Decision(1)),
    ("1 s @enter: a 200-input trivial map stays on one container",
     PoolSnapshot(backlog=199, containers=(busy("a"),), drain_rate=2000.0, cold_start=1.2), Policy(), Decision(1)),
    ("1 s @enter: inputs left at arrival, but not a cold start's worth of work for another",
     PoolSnapshot(backlog=150, containers=(busy("a"),), drain_rate=100.0, cold_start=1.2), Policy(), Decision(1)),
    ("1 s @enter, slow inputs: worth a second container",
     PoolSnapshot(backlog=199, containers=(busy("a"),), drain_rate=2.0, cold_start=1.2), Policy(),
     Decision(2, to_start=1)),
    ("a long backlog doubles the ready containers per step",
     PoolSnapshot(backlog=5000, containers=busy_pool(3), drain_rate=300.0, cold_start=0.2), Policy(),
     Decision(6, to_start=3)),
    ("as many as each get a cold start's worth of work, when fewer than double",
     PoolSnapshot(backlog=1100, containers=busy_pool(4), drain_rate=4000.0, cold_start=0.1), Policy(),
     Decision(7, to_start=3)),
    ("starting containers count toward the doubling",
     PoolSnapshot(backlog=500, containers=(*busy_pool(2), starting("s1"), starting("s2")), **SLOW), Policy(),
     Decision(4)),
    ("never more than the demand needs",
     PoolSnapshot(backlog=1, containers=busy_pool(3), **SLOW), Policy(), Decision(4, to_start=1)),
    ("idle containers take a burst: nothing new (even unmeasured)",
     PoolSnapshot(backlog=2, containers=(idle("a", 1), idle("b", 1))), Policy(), Decision(2)),
    ("a cold start not measured (yet) doesn't block growth",
     PoolSnapshot(backlog=100, containers=(busy("a"),), drain_rate=10.0), Policy(), Decision(2, to_start=1)),
    ("max_containers still caps a worthwhile scale-out",
     PoolSnapshot(backlog=5000, containers=busy_pool(3), **SLOW), Policy(max_containers=4), Decision(4, to_start=1)),
    ("min_containers still a floor when growth is not worth it",
     PoolSnapshot(backlog=199, containers=(busy("a"),), drain_rate=5000.0, cold_start=0.2),
     Policy(min_containers=3), Decision(3, to_start=2)),
    ("buffer on top of a pool that may not grow for its queue",
     PoolSnapshot(backlog=199, containers=(busy("a"),), drain_rate=5000.0, cold_start=0.2),
     Policy(buffer_containers=1), Decision(2, to_start=1)),
    ("single-use containers: one per input, as nothing amortises their start",
     PoolSnapshot(backlog=5, containers=(starting("a"),)), Policy(single_use=True), Decision(5, to_start=4)),
    ("the last scale-out made it faster: keep going",
     PoolSnapshot(backlog=5000, containers=busy_pool(4), drain_rate=4000.0, cold_start=0.1, added_rate=800.0),
     Policy(), Decision(8, to_start=4)),
    ("the last scale-out added under half a container's average: something else limits it",
     PoolSnapshot(backlog=5000, containers=busy_pool(4), drain_rate=4000.0, cold_start=0.1, added_rate=400.0),
     Policy(), Decision(4)),
    ("more containers made it slower: stop",
     PoolSnapshot(backlog=5000, containers=busy_pool(4), drain_rate=4000.0, cold_start=0.1, added_rate=-300.0),
     Policy(), Decision(4)),
    ("the last scale-out's effect not measured yet: hold",
     PoolSnapshot(backlog=5000, containers=busy_pool(4), drain_rate=4000.0, cold_start=0.1, settling=True),
     Policy(), Decision(4)),
    ("a saturated pool still keeps its buffer and floor",
     PoolSnapshot(backlog=5000, containers=busy_pool(4), drain_rate=4000.0, cold_start=0.1, added_rate=0.0),
     Policy(buffer_containers=1, min_containers=6), Decision(6, to_start=2)),
    ("scale-down is unchanged: an idle container past the window goes even mid-measurement",
     PoolSnapshot(containers=(busy("a"), idle("b", 100)), drain_rate=5000.0, cold_start=0.2),
     Policy(scaledown_window=60), Decision(1, to_stop=("b",))),
]


@pytest.mark.parametrize(("pool", "policy", "expected"), [c[1:] for c in CASES + COST_CASES],
                         ids=[c[0] for c in CASES + COST_CASES])
def test_desired_containers(pool: PoolSnapshot, policy: Policy, expected: Decision) -> None:
    assert desired_containers(pool, policy, NOW) == expected


@pytest.mark.parametrize("backlog", range(0, 30))
@pytest.mark.parametrize("slots", [1, 2, 3, 8])
@pytest.mark.parametrize("max_containers", [None, 0, 1, 4])
@pytest.mark.parametrize("buffer", [0, 1, 3])
def test_start_count_invariants_from_zero(backlog: int, slots: int, max_containers: int | None, buffer: int) -> None:
    # Nothing measured: one container for any backlog, then buffer, capped by max (this test used to
    # demand enough containers for the whole backlog at once, the overshoot of issue 10).
    policy = Policy(slots=slots, max_containers=max_containers, buffer_containers=buffer)
    decision = desired_containers(PoolSnapshot(backlog=backlog), policy, NOW)
    assert decision.to_stop == ()
    assert decision.to_start == decision.target
    enough = 1 + buffer if backlog else 0
    assert decision.target == (enough if max_containers is None else min(enough, max_containers))


@pytest.mark.parametrize("backlog", [0, 1, 5, 40, 1000])
@pytest.mark.parametrize("ready", [1, 2, 5])
@pytest.mark.parametrize("slots", [1, 3])
@pytest.mark.parametrize("max_containers", [None, 3, 50])
@pytest.mark.parametrize("rate", [0.0, 50.0, 20_000.0])
@pytest.mark.parametrize("cold_start", [0.05, 1.2])
def test_scale_out_invariants(backlog: int, ready: int, slots: int, max_containers: int | None, rate: float,
                              cold_start: float) -> None:
    pool = PoolSnapshot(backlog=backlog, containers=busy_pool(ready, slots), drain_rate=rate, cold_start=cold_start)
    decision = desired_containers(pool, Policy(slots=slots, max_containers=max_containers), NOW)
    assert decision.to_stop == ()
    needed = -(-(backlog + ready * slots) // slots)
    assert decision.target <= max(ready, needed)  # never more than the demand needs
    assert decision.target <= 2 * ready  # at most double per step
    if max_containers is not None:
        assert decision.target <= max(ready, max_containers)
    if backlog <= rate * cold_start:  # the queue empties before a new one would arrive
        assert decision.to_start == 0
    if rate == 0.0 and backlog and (max_containers is None or max_containers > ready):
        assert decision.to_start > 0  # nothing drains: grow


def simulate(backlog: int, policy: Policy, *, per_container: float, cold_start: float, steps: int = 20) -> list[int]:
    """Container counts over scaling steps of `cold_start` seconds, each started container ready by the next."""
    containers: tuple[ContainerView, ...] = ()
    counts = []
    for _ in range(steps):
        ready = len(containers)
        rate = per_container * ready if ready else None
        pool = PoolSnapshot(backlog=backlog, containers=containers, drain_rate=rate, cold_start=cold_start)
        decision = desired_containers(pool, policy, NOW)
        containers += tuple(busy(f"n{len(containers) + i}") for i in range(decision.to_start))
        counts.append(len(containers))
        backlog = max(0, backlog - int((rate or 0.0) * cold_start))
    return counts


def test_a_steady_long_backlog_still_scales_out_to_max() -> None:
    counts = simulate(100_000, Policy(max_containers=20), per_container=10.0, cold_start=0.5)
    assert counts[:6] == [1, 2, 4, 8, 16, 20] and counts[-1] == 20


def test_slow_enter_pool_scales_only_while_the_work_outlasts_the_start() -> None:
    # 1.2 s cold start, 5 inputs/s per container: 200 inputs are ~40 container-seconds of work.
    counts = simulate(200, Policy(), per_container=5.0, cold_start=1.2)
    assert counts[-1] <= 16 and counts[:3] == [1, 2, 4]
    # The same map of trivial inputs never leaves the first container.
    assert simulate(200, Policy(), per_container=3000.0, cold_start=1.2)[-1] == 1


def test_slots_below_one_mean_one() -> None:
    pool = PoolSnapshot(backlog=3, containers=busy_pool(2), **SLOW)
    assert desired_containers(pool, Policy(slots=0), NOW) == Decision(4, to_start=2)
