"""The scaling loop: snapshot each pool, ask the autoscaler, start and stop containers.

It runs every `scaler_interval` and also when inputs queue up with no container free to take them
(`wake`): at once when a pool with queued inputs has no container at all, so a cold start never
waits for the next period; otherwise at most once per `MIN_WAKE_GAP`, because under steady load
(web requests) nearly every enqueue finds no parked container and a tick per wake-up cost the
control plane ~10 % of its time for decisions that change only as containers start. Starting a container means
choosing a worker (`placement.place`), minting a per-container token and queueing `start_task`
for that worker. Stopping an idle one means answering its next long-poll with `stop=True`.
Pools whose image is still building wait for it; pools whose image failed, whose GPU no worker
offers, or that are in crash-loop backoff don't start anything.

Each tick also samples what the autoscaler weighs a new container against (`pool_observations`):
the pool's drain rate, what its last scale-out added to it, and its cold start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..._protocol import api
from ..longpoll import Signal
from ..policy import placement
from ..policy.autoscaler import ContainerView, PoolSnapshot, desired_containers, warm_pool_params
from ..store import TaskRecord
from .catalog import FunctionEntry
from .images import BUILDING, FAILED
from .pool_observations import Observations
from .queues import Pool, PoolKey
from .tasks import Task

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

log = logging.getLogger("skylift.server")

UNUSED_POOL_GRACE = 1.0  # seconds a pool stays registered with nothing referring to it
MIN_WAKE_GAP = 0.02  # real seconds between ticks woken by enqueues, unless a pool has no container

class Scaler:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._signal = Signal()
        self._woken = False
        self._warm: set[FunctionEntry] = set()  # functions that may want containers without traffic
        self._reported: dict[Pool, str] = {}  # last "can't place" reason logged per pool
        self._evicting: dict[Pool, list[Task]] = {}  # idle containers stopped to make room for a pool
        self._unused_since: dict[Pool, float] = {}  # pools with nothing to do, to drop after a grace
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
        gap = min(MIN_WAKE_GAP, interval)
        loop = asyncio.get_running_loop()
        last_tick = -gap
        while True:
            if not self._woken:
                await self._signal.wait(interval)
            # The wake-ups of a burst become one tick, unless one of them is a cold start.
            while (wait := last_tick + gap - loop.time()) > 0 and not self._cold_pool():
                await self._signal.wait(wait)
            self._woken = False
            last_tick = loop.time()
            try:
                self.tick()
            except Exception:
                log.exception("scaling loop failed; continuing")
            await asyncio.sleep(0)

    def _cold_pool(self) -> bool:
        """Whether some pool has queued inputs and no container that could take them."""
        for pool in self.cp.pools.all():
            if pool.n_pending and not any(not t.stop_requested for t in pool.tasks.values()):
                return True
        return False

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
                self._unused_since.pop(pool, None)
            return
        self.cp.dispatcher.check_crash_loop(pool)
        observed = self._observed.get(pool.key)
        if observed is None:
            observed = self._observed[pool.key] = Observations(pool, now, pool.n_completed)
        observed.sample(pool, now)
        live = [t for t in pool.tasks.values() if not t.stop_requested]
        ready = sum(1 for t in live if not t.starting)
        added_rate, settling = observed.growth(ready, now)
        snapshot = PoolSnapshot(
            backlog=pool.n_pending,
            containers=tuple(ContainerView(t.task_id, t.starting, len(t.leased), t.idle_since) for t in live),
            last_active=pool.last_active,
            drain_rate=observed.drain_rate(ready),
            cold_start=observed.cold_start,
            added_rate=added_rate,
            settling=settling,
        )
        decision = desired_containers(snapshot, function.policy(), now)
        for task_id in decision.to_stop:
            self.cp.dispatcher.stop_task(pool.tasks[task_id], "scaled down after being idle")
        if decision.to_start and now >= pool.backoff_until:
            self._start(pool, decision.to_start, now)
        elif decision.target == 0 and self.cp.pools.unused(pool):
            # Not at once: a call may hold the pool before it counts as using it (call.start takes
            # the pool, then stores its call in a shielded task that may run after this tick).
            unused_since = self._unused_since.setdefault(pool, now)
            if now - unused_since >= UNUSED_POOL_GRACE:
                self.cp.pools.drop(pool)
                self._reported.pop(pool, None)
                self._unused_since.pop(pool, None)
            return
        self._unused_since.pop(pool, None)

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
            # A sandbox has no inputs but is never idle: its command runs (docs/sandboxes.md).
            if (other is pool or not task.ever_ready or task.stop_requested or task.leased
                    or task.definition.get("sandbox") or live[other] <= other.function.policy().min_containers):
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
