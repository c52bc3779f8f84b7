"""What a pool has shown the autoscaler: how fast it drains, what more containers added, how long they take to start.

The scaling loop samples each pool every tick (`Observations.sample`) and hands the figures to the
pure `autoscaler.desired_containers`:

* drain rate: outputs the pool's ready containers complete per second, smoothed over about
  `DRAIN_WINDOW` seconds of the pool having work (an idle spell neither dilutes nor forgets it).
  It is kept per ready container-second, so a container that just became ready counts from then,
  and reported for the containers ready now;
* what the last scale-out added: the pool's rate with its ready containers now against its rate
  with about half as many, each measured while inputs stayed queued (so the containers, not the
  caller, set the pace). A pool that got little faster from more containers is limited by something else
  (the machine's CPUs, a shared resource, the caller's feed) and more would only cost;
* cold start: container start -> ready, from the profile the control plane records for each
  container (`profiles.ColdStart`), smoothed.

Only the control plane's clock is read (the `now` the loop passes), so tests can move time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .queues import Pool

# The drain rate is smoothed over about this many seconds of work: several scaling periods, yet
# short enough to follow a map whose inputs change speed.
DRAIN_WINDOW = 1.0
# A rate needs this many container-seconds of ready containers with work behind it; before that
# "nothing completed yet" says nothing about how slow the function is.
MIN_OBSERVED = 0.05
COLD_START_WEIGHT = 0.5  # the newest container's share of the smoothed cold start
# A pool rate at a given number of ready containers counts once it spans this many outputs and
# seconds (only fast functions get a verdict on what more containers add; slow ones keep growing),
# and is forgotten after STALE_RATE seconds without a sample (the work may have changed).
MIN_RATE_OUTPUTS = 100
MIN_RATE_SECONDS = 0.05
STALE_RATE = 5.0
# After a scale-out of a pool whose rate had a verdict, how long it may hold while the new
# containers' effect is measured (at most; usually one or two ticks).
SETTLE = 0.5


@dataclass
class RateAt:
    """The pool's rate while exactly some number of containers were ready and inputs stayed queued."""

    outputs: float = 0.0
    seconds: float = 0.0
    updated: float = 0.0

    def rate(self, now: float) -> float | None:
        if self.outputs < MIN_RATE_OUTPUTS or self.seconds < MIN_RATE_SECONDS or now - self.updated > STALE_RATE:
            return None
        return self.outputs / self.seconds


@dataclass(eq=False)
class Observations:
    """What one pool has shown so far: how fast its containers drain it and how long they take to start."""

    pool: Pool
    at: float  # when last sampled
    completed: int  # pool.n_completed then
    had_work: bool = False  # inputs were queued or running then
    outputs: float = 0.0  # decayed sums: outputs completed...
    seconds: float = 0.0  # ...over this many ready container-seconds with work
    cold_start: float | None = None
    counted: set[str] = field(default_factory=set)  # containers whose cold start is in
    ready_then: int = 0  # ready containers at the last sample...
    queued_then: bool = False  # ...and whether inputs were queued then
    level_since: float = 0.0  # when the number of ready containers last changed
    by_ready: dict[int, RateAt] = field(default_factory=dict)  # the pool's rate by containers ready

    def sample(self, pool: Pool, now: float) -> None:
        if pool is not self.pool:  # dropped while idle and made again: its counter restarted
            self.pool, self.completed = pool, pool.n_completed
        ready = [t for t in pool.tasks.values() if t.ever_ready and t.alive and not t.stop_requested]
        for task in ready:
            ready_at = task.profile.ready_at
            if ready_at is not None and task.task_id not in self.counted:
                self.counted.add(task.task_id)
                took = max(0.0, ready_at - task.profile.created_at)
                self.cold_start = took if self.cold_start is None else \
                    self.cold_start + COLD_START_WEIGHT * (took - self.cold_start)
        if len(self.counted) > 2 * len(pool.tasks) + 16:
            self.counted &= pool.tasks.keys()
        if self.ready_then != len(ready):
            self.level_since = now
        self.ready_then = len(ready)
        elapsed = now - self.at
        if elapsed <= 0:  # still the interval's start; outputs that came meanwhile count with it
            self.had_work = self.had_work or bool(pool.n_pending or pool.n_running)
            self.queued_then = bool(pool.n_pending)
            return
        done = max(0, pool.n_completed - self.completed)
        since, self.at, self.completed = self.at, now, pool.n_completed
        was_busy, self.had_work = self.had_work, bool(pool.n_pending or pool.n_running)
        queued = self.queued_then and bool(pool.n_pending)  # the containers set the pace throughout
        self.queued_then = bool(pool.n_pending)
        if not (was_busy or done):
            return  # idle time tells nothing about the rate
        # Container-seconds that could drain: a ready container with inputs, or any while some queue.
        seconds = 0.0
        for task in ready:
            if task.leased or pool.n_pending:
                ready_at = task.profile.ready_at
                seconds += now - (since if ready_at is None else max(since, ready_at))
        decay = math.exp(-elapsed / DRAIN_WINDOW)
        self.outputs = self.outputs * decay + done
        self.seconds = self.seconds * decay + seconds
        level = round(seconds / elapsed)  # containers ready on average over the interval
        if queued and level:
            at = self.by_ready.setdefault(level, RateAt())
            at.outputs = at.outputs * decay + done
            at.seconds = at.seconds * decay + elapsed
            at.updated = now

    def drain_rate(self, ready: int) -> float | None:
        """Outputs/s the pool's `ready` containers complete, or None before there is evidence."""
        if self.seconds < MIN_OBSERVED:
            return None
        return self.outputs / self.seconds * ready

    def growth(self, ready: int, now: float) -> tuple[float | None, bool]:
        """(outputs/s each container added when the pool last grew to `ready`, or None if not measured;
        whether that is still being measured)."""
        for stale in [n for n, at in self.by_ready.items() if now - at.updated > STALE_RATE]:
            del self.by_ready[stale]
        # Against about the size before the last doubling: adjacent sizes differ by less than the noise.
        fewer = [n for n, at in self.by_ready.items() if n <= ready - max(1, ready // 2) and at.rate(now) is not None]
        if not fewer:
            return None, False  # nothing to compare with (or a slow function): no verdict
        before = max(fewer)
        before_rate = self.by_ready[before].rate(now)
        current = self.by_ready.get(ready)
        rate = None if current is None else current.rate(now)
        if rate is None or before_rate is None:
            return None, now - self.level_since < SETTLE
        return (rate - before_rate) / (ready - before), False
