"""How many containers a pool should have: a pure function of a snapshot (Modal §3.5).

    desired_containers(pool, policy, now) -> Decision

* Capacity is containers x slots, where slots is the concurrency target (`target_inputs`, else
  `max_inputs`, else 1). The pool wants at most enough containers for its backlog plus running
  inputs; containers still starting count as capacity.
* Scaling out respects start-up cost. A new container only arrives after the pool's observed cold
  start (`cold_start`, container start -> ready), and meanwhile the ready containers keep draining
  the queue at the observed `drain_rate`. So a container is started only if inputs will still be
  queued when it arrives, and only as many as will each get at least a cold start's worth of work
  at the pool's per-container rate (a container that works less than it took to start costs more
  than it gives; one that arrives after the queue is empty only costs). With nothing measured yet
  (no container of the pool ready, or not ready long enough to have a rate) the pool grows one
  container at a time: the first call starts one. The ready containers at most double per step,
  because the rate a step measured doesn't yet include the containers it started. And a pool
  whose last scale-out added little to its rate (`added_rate`, under half a container's average
  each) stops growing: something else than containers limits it, e.g. the machine's CPUs; while
  that is still being measured (`settling`) it holds. Single-use
  containers (`single_use_containers=True`) serve one input each, so each input gets its own.
* `buffer_containers` extra containers are kept while the pool is active (it has work, or had
  some within `scaledown_window`); `min_containers` is a floor even with no traffic;
  `max_containers` caps everything (requests queue beyond it).
* Only containers idle for at least `scaledown_window` are stopped, longest-idle first, and never
  below the target. A starting or busy container is never chosen.
* Each Cls parameter set is a pool of its own. With no traffic, `min_containers` warms the pool
  `Cls()` would use (`warm_pool_params`): a class without parameters, or whose parameters all have
  defaults. Other parameter sets get a pool, and then their floor, when first called.

No I/O and no clock of its own: the scaling loop (`scaler.py`) measures the rate and the cold
start and passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._protocol import api


@dataclass(frozen=True)
class Policy:
    min_containers: int = 0
    max_containers: int | None = None
    buffer_containers: int = 0
    scaledown_window: float = api.DEFAULT_SCALEDOWN_WINDOW
    slots: int = 1
    single_use: bool = False  # each container serves one input: nothing to amortise its start over


@dataclass(frozen=True)
class ContainerView:
    task_id: str
    starting: bool = False
    running_inputs: int = 0
    idle_since: float = 0.0  # when it last had no inputs; meaningless while it has some


@dataclass(frozen=True)
class PoolSnapshot:
    backlog: int = 0
    containers: tuple[ContainerView, ...] = ()
    last_active: float | None = None  # last time an input was queued or running in the pool
    # Observations (None: not measured yet). Outputs per second the ready containers complete now,
    # smoothed over the time the pool had work; seconds from a container's start to ready, smoothed.
    drain_rate: float | None = None
    cold_start: float | None = None
    # Outputs/s each container of the pool's last scale-out added to the drain rate (None: not measured).
    added_rate: float | None = None
    settling: bool = False  # the last scale-out's containers are ready but their effect isn't measured yet


@dataclass(frozen=True)
class Decision:
    target: int
    to_start: int = 0
    to_stop: tuple[str, ...] = ()


def warm_pool_params(definition: dict[str, Any]) -> tuple[bytes | None, ...]:
    """The parameter sets whose pools `min_containers` keeps up before any call.

    Example:
        >>> warm_pool_params({"is_class": False})
        (None,)
        >>> warm_pool_params({"is_class": True, "parameters": ["size"], "default_params": None})
        ()
    """
    if not definition.get("is_class") or not definition.get("parameters"):
        return (None,)
    default = definition.get("default_params")
    return (default,) if isinstance(default, bytes) else ()


# The ready containers at most double per scaling step: a step's rate doesn't yet show what the
# containers it started add, so larger jumps would act on stale evidence.
GROWTH = 2
# A pool whose last scale-out added less than this share of a container's average rate per new
# container is limited by something else than containers (CPUs, a shared resource, its feed).
SATURATED = 0.5


def desired_containers(pool: PoolSnapshot, policy: Policy, now: float) -> Decision:
    slots = max(1, policy.slots)
    running = sum(c.running_inputs for c in pool.containers)
    demand = pool.backlog + running
    current = len(pool.containers)
    serving = -(-demand // slots)  # ceil: enough for every queued and running input
    if serving > current and not policy.single_use:
        serving = max(current, min(serving, scale_out_limit(pool)))
    active = demand > 0 or (pool.last_active is not None and now - pool.last_active < policy.scaledown_window)
    target = serving + (policy.buffer_containers if active else 0)
    target = max(target, policy.min_containers)
    if policy.max_containers is not None:
        target = min(target, max(0, policy.max_containers))
    if target > current:
        return Decision(target, to_start=target - current)
    excess = current - target
    if excess == 0:
        return Decision(target)
    idle = sorted(
        (c for c in pool.containers
         if not c.starting and c.running_inputs == 0 and now - c.idle_since >= policy.scaledown_window),
        key=lambda c: (c.idle_since, c.task_id),
    )
    return Decision(target, to_stop=tuple(c.task_id for c in idle[:excess]))


def scale_out_limit(pool: PoolSnapshot) -> int:
    """How many containers the backlog is worth, counting those already there (before min/max/buffer).

    Example:
        >>> ready = tuple(ContainerView(f"t{i}", running_inputs=1) for i in range(2))
        >>> scale_out_limit(PoolSnapshot(backlog=1000, containers=ready, drain_rate=200.0, cold_start=0.5))
        4
        >>> scale_out_limit(PoolSnapshot(backlog=50, containers=ready, drain_rate=200.0, cold_start=0.5))
        2
    """
    current = len(pool.containers)
    ready = sum(1 for c in pool.containers if not c.starting)
    if ready == 0 or pool.drain_rate is None:
        return max(1, current)  # nothing measured: one at a time, and the first call starts one
    rate = max(0.0, pool.drain_rate)
    cold = max(0.0, pool.cold_start or 0.0)
    left = pool.backlog - rate * cold  # still queued when a container started now is ready
    if left <= 0:
        return current
    per_container = rate / ready
    if pool.settling:
        return current  # the next step waits for what the last one added
    if pool.added_rate is not None and pool.added_rate < SATURATED * per_container:
        return current  # more containers stopped making it faster
    limit = GROWTH * ready
    if per_container * cold > 0:
        # With n containers then, each drains left / n inputs at per_container: at least `cold` seconds.
        limit = min(limit, int(left / (per_container * cold)))
    return max(current, limit)
