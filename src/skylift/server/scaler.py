"""The scaling loop: snapshot each pool, ask the autoscaler, start and stop containers.

It runs every `scaler_interval` and also the moment inputs queue up with no container free to
take them (`wake`), so a cold start never waits for the next period. Starting a container means
choosing a worker (`placement.place`), minting a per-container token and queueing `start_task`
for that worker. Stopping an idle one means answering its next long-poll with `stop=True`.
Pools whose image is still building wait for it; pools whose image failed, whose GPU no worker
offers, or that are in crash-loop backoff don't start anything.

Each tick also measures what the autoscaler weighs a new container against (`Observations`): the
pool's drain rate (outputs its ready containers complete per second, smoothed over the time the
pool had work, so an idle spell neither dilutes nor forgets it) and its cold start (container
start -> ready, from the profile the control plane records for each container).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._protocol import api
from . import placement
from .autoscaler import ContainerView, PoolSnapshot, desired_containers, warm_pool_params
from .catalog import FunctionEntry
from .images import BUILDING, FAILED
from .longpoll import Signal
from .queues import Pool, PoolKey
from .store import TaskRecord
from .tasks import Task

if TYPE_CHECKING:
    from .control_plane import ControlPlane

log = logging.getLogger("skylift.server")

# The drain rate is smoothed over about this many seconds of work: several scaling periods, yet
# short enough to follow a map whose inputs change speed.
DRAIN_WINDOW = 1.0
# A rate needs this many container-seconds of ready containers with work behind it; before that
# "nothing completed yet" says nothing about how slow the function is.
MIN_OBSERVED = 0.05
COLD_START_WEIGHT = 0.5  # the newest container's share of the smoothed cold start


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

    def sample(self, pool: Pool, now: float) -> None:
        if pool is not self.pool:  # dropped while idle and made again: its counter restarted
            self.pool, self.completed = pool, pool.n_completed
        ready = [t for t in pool.tasks.values() if t.ever_ready and t.alive]
        for task in ready:
            ready_at = task.profile.ready_at
            if ready_at is not None and task.task_id not in self.counted:
                self.counted.add(task.task_id)
                took = max(0.0, ready_at - task.profile.created_at)
                self.cold_start = took if self.cold_start is None else \
                    self.cold_start + COLD_START_WEIGHT * (took - self.cold_start)
        if len(self.counted) > 2 * len(pool.tasks) + 16:
            self.counted &= pool.tasks.keys()
        elapsed = now - self.at
        if elapsed <= 0:  # outputs that came meanwhile count with the next interval
            self.had_work = self.had_work or bool(pool.n_pending or pool.n_running)
            return
        done = max(0, pool.n_completed - self.completed)
        since, self.at, self.completed = self.at, now, pool.n_completed
        was_busy, self.had_work = self.had_work, bool(pool.n_pending or pool.n_running)
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

    def drain_rate(self, ready: int) -> float | None:
        """Outputs/s the pool's `ready` containers complete, or None before there is evidence."""
        if self.seconds < MIN_OBSERVED:
            return None
        return self.outputs / self.seconds * ready


class Scaler:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._signal = Signal()
        self._woken = False
        self._warm: set[FunctionEntry] = set()  # functions that may want containers without traffic
        self._reported: dict[Pool, str] = {}  # last "can't place" reason logged per pool
        self._evicting: dict[Pool, list[Task]] = {}  # idle containers stopped to make room for a pool
        # Kept across a pool being dropped while idle: the next burst starts from what it showed.
        self._observed: dict[PoolKey, Observations] = {}

    def wake(self) -> None:
        self._woken = True
        self._signal.notify()

    def ensure_warm(self, function: FunctionEntry) -> None:
        """Track a function whose min_containers should be kept even with no calls."""
        self._warm.add(function)

    async def run(self) -> None:
        interval = self.cp.settings.scaler_interval
        while True:
            if not self._woken:
                await self._signal.wait(interval)
            self._woken = False
            try:
                self.tick()
            except Exception:
                log.exception("scaling loop failed; continuing")
            await asyncio.sleep(0)

    def tick(self) -> None:
        now = self.cp.clock.now()
        for function in list(self._warm):
            if not function.app.running:
                self._warm.discard(function)
            elif function.policy().min_containers > 0:
                for params in warm_pool_params(function.definition):
                    self.cp.pools.get(function, params)
        for pool in self.cp.pools.all():
            self._scale(pool, now)
        for key, observed in list(self._observed.items()):
            if not observed.pool.function.app.running:
                del self._observed[key]

    def _scale(self, pool: Pool, now: float) -> None:
        function = pool.function
        if not function.app.running:
            for task in list(pool.tasks.values()):
                self.cp.dispatcher.stop_task(task, "app stopped")
            if self.cp.pools.unused(pool):
                self.cp.pools.drop(pool)
                self._reported.pop(pool, None)
                self._observed.pop(pool.key, None)
            return
        self.cp.dispatcher.check_crash_loop(pool)
        observed = self._observed.get(pool.key)
        if observed is None:
            observed = self._observed[pool.key] = Observations(pool, now, pool.n_completed)
        observed.sample(pool, now)
        live = [t for t in pool.tasks.values() if not t.stop_requested]
        snapshot = PoolSnapshot(
            backlog=pool.n_pending,
            containers=tuple(ContainerView(t.task_id, t.starting, len(t.leased), t.idle_since) for t in live),
            last_active=pool.last_active,
            drain_rate=observed.drain_rate(sum(1 for t in live if not t.starting)),
            cold_start=observed.cold_start,
        )
        decision = desired_containers(snapshot, function.policy(), now)
        for task_id in decision.to_stop:
            self.cp.dispatcher.stop_task(pool.tasks[task_id], "scaled down after being idle")
        if decision.to_start and now >= pool.backoff_until:
            self._start(pool, decision.to_start, now)
        elif decision.target == 0 and self.cp.pools.unused(pool):
            self.cp.pools.drop(pool)
            self._reported.pop(pool, None)

    def _start(self, pool: Pool, n: int, now: float) -> None:
        function = pool.function
        status, error = self.cp.images.readiness(function.image_id)
        if status == BUILDING:
            return
        if status == FAILED:
            if pool.n_pending:
                self.cp.dispatcher.fail_pending(pool, api.STATUS_INIT_FAILURE,
                                                f"the image {function.image_id} of {function.tag!r} failed to "
                                                f"build: {error}")
            return
        for _ in range(n):
            decision = placement.place(function.request, [w.view() for w in self.cp.workers.connected()])
            if isinstance(decision, placement.Unplaceable):
                if not decision.permanent and self._evict_for(pool):
                    return
                self._unplaceable(pool, decision)
                return
            self._reported.pop(pool, None)
            self._launch(pool, decision, now)

    def _evict_for(self, pool: Pool) -> bool:
        """Stop idle containers of other pools to make room for `pool`; True if some are on their way out."""
        evicting = [t for t in self._evicting.get(pool, ()) if t.alive]
        if evicting:
            self._evicting[pool] = evicting
            return True
        self._evicting.pop(pool, None)
        live: dict[Pool, int] = {}
        for task in self.cp.tasks.all():
            if task.alive and not task.stop_requested:
                live[task.pool] = live.get(task.pool, 0) + 1
        idle: dict[str, Task] = {}
        for task in self.cp.tasks.all():
            other = task.pool
            if (other is pool or not task.ever_ready or task.stop_requested or task.leased
                    or live[other] <= other.function.policy().min_containers):
                continue
            idle[task.task_id] = task
        choice = placement.choose_evictions(
            pool.function.request, [w.view() for w in self.cp.workers.connected()],
            [placement.IdleContainer(t.task_id, t.worker_id, t.placed.cpu, t.placed.memory_mb, t.placed.gpu_type,
                                     t.placed.gpu_count, t.idle_since) for t in idle.values()])
        if not choice:
            return False
        for task_id in choice:
            self.cp.dispatcher.stop_task(idle[task_id], f"evicted while idle to make room for {pool.function.tag!r}")
        self._evicting[pool] = [idle[task_id] for task_id in choice]
        return True

    def _unplaceable(self, pool: Pool, decision: placement.Unplaceable) -> None:
        function = pool.function
        # A pool that already runs containers and merely can't grow is normal under load: only
        # say something when its inputs have nowhere to run at all.
        stuck = decision.permanent or not any(t.alive for t in pool.tasks.values())
        if stuck and self._reported.get(pool) != decision.reason:
            self._reported[pool] = decision.reason
            self.cp.logs.system(function.app.app_id, "", function.tag,
                                f"can't start a container for {function.tag!r} yet: {decision.reason}")
        if decision.permanent and pool.n_pending:
            self.cp.dispatcher.fail_pending(pool, api.STATUS_INTERNAL_FAILURE,
                                            f"can't run {function.tag!r}: {decision.reason}")

    def unplaceable(self, function: FunctionEntry) -> str | None:
        """Why no connected worker could ever run `function` (None if one could, or none is connected)."""
        workers = [w.view() for w in self.cp.workers.connected()]
        if not workers:
            return None
        decision = placement.place(function.request, workers)
        if isinstance(decision, placement.Unplaceable) and decision.permanent:
            return decision.reason
        return None

    def _launch(self, pool: Pool, placed: placement.Placed, now: float) -> Task:
        worker = self.cp.workers.get(placed.worker_id)
        assert worker is not None
        worker.reserve(placed)
        task, token = self.cp.tasks.create(pool, worker.worker_id, placed, now)
        task.reserved = True
        worker.send({"op": "start_task", "task": self.task_spec(task, token, worker.server_url)})
        self.cp.dispatcher.spawn(self.cp.db.run(self.cp.db.store.insert_task, TaskRecord(
            task.task_id, task.token_hash, pool.function.function_id, pool.params, worker.worker_id, placed.cpu,
            placed.memory_mb, placed.gpu_type, placed.gpu_count, time.time())))
        return task

    def task_spec(self, task: Task, token: str, server_url: str) -> dict[str, Any]:
        function = task.pool.function
        definition = task.definition
        # Secrets in order (later ones win), then the function's env=, then the platform's own.
        attached = self.cp.storage.attachments(definition)
        if attached.missing_secrets:
            self.cp.logs.system(function.app.app_id, task.task_id, function.tag,
                                f"secret(s) {', '.join(attached.missing_secrets)} of {function.tag!r} were deleted; "
                                "their variables are not set (redeploy with the secret recreated)")
        env = attached.env
        env.update({str(k): str(v) for k, v in (definition.get("env") or {}).items()})
        env.update({
            api.ENV_SERVER_URL: server_url,
            api.ENV_TASK_ID: task.task_id,
            api.ENV_TASK_TOKEN: token,
            api.ENV_IS_REMOTE: "1",
            "MODAL_TASK_ID": task.task_id,  # Modal's name; user code tells containers apart by it
            "SKYLIFT_ENVIRONMENT": function.app.environment,
        })
        resources = definition.get("resources") or {}
        image = self.cp.images.definition(function.image_id)
        gpu = None
        if task.placed.gpu_type:  # the worker's own name for what was granted
            gpu = {"type": task.placed.gpu_type, "count": task.placed.gpu_count, "fallbacks": []}
        spec: dict[str, Any] = {
            "task_id": task.task_id,
            "token": token,
            "app_id": function.app.app_id,
            "function_id": function.function_id,
            "function_tag": function.tag,
            "image_id": function.image_id,
            "server_url": server_url,
            "env": env,
            "resources": {"cpu": task.placed.cpu, "memory": task.placed.memory_mb, "gpu": gpu,
                          "ephemeral_disk": resources.get("ephemeral_disk")},
            "mounts": list(definition.get("mounts") or []),
            "definition": definition,
        }
        if attached.volumes:
            spec["volumes"] = attached.volumes
        if attached.bucket_mounts:
            spec["bucket_mounts"] = attached.bucket_mounts
        if image is not None:  # lets any worker build it before starting the container
            spec["image"] = image
        if task.pool.params is not None:  # a memory-snapshot template builds the instance before any container
            spec["params"] = task.pool.params
        return spec
