"""How many containers a pool should have: a pure function of a snapshot (Modal §3.5).

    desired_containers(pool, policy, now) -> Decision

* Capacity is containers x slots, where slots is the concurrency target (`target_inputs`, else
  `max_inputs`, else 1). The pool wants enough containers for its backlog plus running inputs.
* Containers still starting count as capacity, so a burst doesn't start one container per input.
* `buffer_containers` extra containers are kept while the pool is active (it has work, or had
  some within `scaledown_window`); `min_containers` is a floor even with no traffic;
  `max_containers` caps everything (requests queue beyond it).
* Only containers idle for at least `scaledown_window` are stopped, longest-idle first, and never
  below the target. A starting or busy container is never chosen.
* Each Cls parameter set is a pool of its own. With no traffic, `min_containers` warms the pool
  `Cls()` would use (`warm_pool_params`): a class without parameters, or whose parameters all have
  defaults. Other parameter sets get a pool, and then their floor, when first called.

No I/O and no clock of its own: the scaling loop (`scaler.py`) passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._protocol import api


@dataclass(frozen=True)
class Policy:
    min_containers: int = 0
    max_containers: int | None = None
    buffer_containers: int = 0
    scaledown_window: float = api.DEFAULT_SCALEDOWN_WINDOW
    slots: int = 1


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


def desired_containers(pool: PoolSnapshot, policy: Policy, now: float) -> Decision:
    slots = max(1, policy.slots)
    running = sum(c.running_inputs for c in pool.containers)
    demand = pool.backlog + running
    needed = -(-demand // slots)  # ceil
    active = demand > 0 or (pool.last_active is not None and now - pool.last_active < policy.scaledown_window)
    target = needed + (policy.buffer_containers if active else 0)
    target = max(target, policy.min_containers)
    if policy.max_containers is not None:
        target = min(target, max(0, policy.max_containers))
    current = len(pool.containers)
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
