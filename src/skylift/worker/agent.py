"""The worker agent: one per machine, connected to the control plane, running what it is told.

    register ──▶ poll ──▶ start_task  → image (build if missing) → mounts → runtime.start → report running
                  ▲          stop_task   → runtime.stop (SIGTERM, or SIGKILL with kill=True)
                  │          build_image → build layer by layer, streaming image_progress
                  └──────────┘  (each container's exit is reported with its exit code)

The agent keeps one connection and reconnects with backoff when the control plane restarts; it
registers again under the same worker id and re-announces its running containers, which keep
running meanwhile (they reconnect on their own).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._protocol import api
from .._protocol.rpc import ErrorCode, RpcClient, RpcError
from .._runtime.connection import ReconnectingClient
from .._version import __version__
from . import host
from .batching import BatchSender
from .blobs import BlobCache, RpcBlobSource
from .images import BuildError, BuiltImage, prepare_runtime_site
from .mounts import MountStore, source_dir
from .process_runtime import ProcessRuntime
from .runtime import ContainerRuntime, ExplainsExits
from .runtimes import container_spec, image_store
from .snapshot_runtime import SnapshotRuntime
from .task_commands import run_exec
from .task_spec import snapshot_source, task_mounts
from .volumes import StorageMounts

log = logging.getLogger("skylift.worker")

POLL_SECONDS = api.MAX_POLL_SECONDS - 5
# How long a stopped container gets to drain and run @exit hooks before SIGKILL (Modal: 30 s).
STOP_GRACE_SECONDS = 30.0
EXIT_MESSAGE_LINES = 10
# A container's last lines are sent before its exit is reported (the end of an app's log waits for
# the exits, server/api/logs.py); a control plane that doesn't take them holds the report this long at most.
LOG_FLUSH_SECONDS = 5.0
# How long an orphaned worker waits for its control plane to come back before it exits.
ORPHAN_GRACE_SECONDS = 30.0


@dataclass
class Task:
    spec: dict[str, Any]
    state: str = "starting"  # starting -> running -> exited
    stop_requested: bool = False
    kill: bool = False
    shutting_down: bool = False  # stopped because this worker is stopping, not because it was asked
    stderr_tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=EXIT_MESSAGE_LINES))
    runner: asyncio.Task[None] | None = None


class WorkerAgent:
    def __init__(self, server_url: str, token: str, home: Path, *, runtime: ContainerRuntime | None = None,
                 labels: dict[str, str] | None = None, worker_id: str | None = None,
                 stop_grace: float = STOP_GRACE_SECONDS, gpus: list[host.Gpu] | None = None) -> None:
        self.home = home
        # Containers of enable_memory_snapshot functions are forked from templates (snapshot_runtime.py).
        self.snapshots = SnapshotRuntime(runtime or ProcessRuntime(), home / "snapshots", note=self.system_log)
        self.runtime: ContainerRuntime = self.snapshots
        self.labels = labels or {}
        self.worker_id = worker_id
        self.stop_grace = stop_grace
        self.exit_with_parent = False
        self.gpus = host.detect_gpus() if gpus is None else gpus
        self.allocator = host.GpuAllocator(self.gpus)
        hello: dict[str, Any] = {"token": token, "role": api.ROLE_WORKER, "version": __version__}
        if worker_id:
            hello["worker_id"] = worker_id
        self.rpc = ReconnectingClient(server_url, hello, give_up_after=None, max_backoff=5.0,
                                      on_connect=self._register)
        blobs = BlobCache(home / "blobs-cache", RpcBlobSource(self.rpc))
        self.images = image_store(self.runtime, home, blobs, prepare_runtime_site(home / "runtime-site"))
        self.mounts = MountStore(home / "mounts", blobs)
        self.storage_mounts = StorageMounts(self.rpc, blobs, self.system_log)
        self.tasks: dict[str, Task] = {}
        self._builds: dict[str, asyncio.Task[BuiltImage]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._logs: BatchSender[dict[str, Any]] = BatchSender(self._send_logs, what="log lines")
        self._stopping = asyncio.Event()
        self.registered = asyncio.Event()
        # Read at start, the parent may already be init: a control plane killed right after it started
        # this worker. Its launcher passes its own pid (--parent-pid) so that orphan still notices.
        self.parent_pid = os.getppid()

    # -- connection ---------------------------------------------------------------------------

    async def _register(self, client: RpcClient) -> None:
        params: dict[str, Any] = {"hostname": socket.gethostname(), "resources": host.resources(self.gpus),
                                  "labels": self.labels, "runtimes": [self.runtime.name]}
        if self.worker_id:
            params["worker_id"] = self.worker_id
        # Every container it has (starting ones too): the control plane writes off the others it placed here.
        params["task_ids"] = list(self.tasks)
        running = [{"task_id": tid, "state": "running"} for tid, t in self.tasks.items() if t.state == "running"]
        result = await client.call("worker.register", params)
        if self.worker_id and result["worker_id"] != self.worker_id:
            log.warning("the control plane renamed this worker %s -> %s", self.worker_id, result["worker_id"])
        self.worker_id = result["worker_id"]
        self.rpc.hello_params["worker_id"] = self.worker_id
        if running:
            await client.call("worker.report", {"events": running})
        log.info("registered as %s (%d running container(s))", self.worker_id, len(running))
        self.registered.set()

    async def _send_logs(self, entries: list[dict[str, Any]]) -> None:
        await self.rpc.call("worker.logs", {"entries": entries})

    async def _flush_logs(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._logs.flush(), LOG_FLUSH_SECONDS)

    async def report(self, task_id: str, state: str, exit_code: int | None = None, message: str | None = None,
                     cause: str | None = None, profile: dict[str, Any] | None = None,
                     signal_number: int | None = None) -> None:
        event: dict[str, Any] = {"task_id": task_id, "state": state}
        if signal_number is not None:
            event["signal"] = signal_number
        if profile:
            event["profile"] = profile
        if exit_code is not None:
            event["exit_code"] = exit_code
        if message:
            event["message"] = message
        if cause:
            event["cause"] = cause
        try:
            await self.rpc.call("worker.report", {"events": [event]})
        except RpcError as exc:
            log.warning("could not report %s %s: %s", task_id, state, exc)

    def system_log(self, task_id: str, text: str) -> None:
        self._logs.add({"task_id": task_id, "stream": "system", "text": text, "ts": time.time()})

    def _on_output(self, task_id: str, stream: str, text: str) -> None:
        task = self.tasks.get(task_id)
        if task is not None and stream == "stderr":
            task.stderr_tail.append(text)
        self._logs.add({"task_id": task_id, "stream": stream, "text": text, "ts": time.time()})

    # -- main loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until `stop()`; then stop every container and report it."""
        watchdog = asyncio.get_running_loop().create_task(self._watch_parent())
        try:
            if not await self._until_stopped(self.rpc.connect()):
                return
            while not self._stopping.is_set():
                poll = asyncio.ensure_future(self.rpc.call("worker.poll", {"timeout": POLL_SECONDS}))
                try:
                    if not await self._until_stopped(poll):
                        break
                    result = poll.result()
                except RpcError as exc:
                    if exc.code == ErrorCode.AUTH:
                        raise
                    log.warning("worker.poll failed: %s", exc)
                    await asyncio.sleep(1.0)
                    continue
                for command in result.get("commands") or []:
                    self.handle(command)
        finally:
            watchdog.cancel()
            await self.shutdown()

    async def _until_stopped(self, coro: Any) -> bool:
        """Await `coro` unless `stop()` comes first (then cancel it and return False)."""
        work = asyncio.ensure_future(coro)
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait([work, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not work.done():
            work.cancel()
            return False
        work.result()
        return True

    async def _watch_parent(self) -> None:
        # A worker its control plane started (the embedded platform) must not outlive it: once
        # orphaned and cut off from the control plane for a while, it stops its containers and exits.
        parent = self.parent_pid
        cut_off_since: float | None = None
        while True:
            await asyncio.sleep(1.0)
            if self.exit_with_parent and os.getppid() != parent:
                log.warning("the control plane that started this worker is gone; stopping its containers")
                self.stop()
                return
            if self.rpc.connected or os.getppid() == parent:
                cut_off_since = None
                continue
            cut_off_since = cut_off_since or time.monotonic()
            if time.monotonic() - cut_off_since > ORPHAN_GRACE_SECONDS:
                log.warning("the process that started this worker is gone and the control plane is unreachable; "
                            "stopping")
                self.stop()
                return

    def stop(self) -> None:
        self._stopping.set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def handle(self, command: dict[str, Any]) -> None:
        op = command.get("op")
        if op == "start_task":
            spec = command["task"]
            if spec["task_id"] in self.tasks:
                return  # a repeated command (e.g. after a reconnect)
            task = self.tasks[spec["task_id"]] = Task(spec)
            task.runner = self._spawn(self._run_task(task))
        elif op == "stop_task":
            self._spawn(self.stop_task(command["task_id"], kill=bool(command.get("kill"))))
        elif op == "build_image":
            self._spawn(self._build_command(command["image_id"], command["image"], command.get("secrets")))
        elif op == "exec_task":
            self._spawn(run_exec(self.rpc, self.runtime, command))
        else:
            log.warning("ignoring unknown command %r", op)

    # -- images -------------------------------------------------------------------------------

    async def build_image(self, image_id: str, definition: dict[str, Any],
                          progress: BatchSender[str] | None = None,
                          secrets: dict[str, dict[str, str]] | None = None) -> BuiltImage:
        """Build (or join the build of) an image; one build per image id at a time."""
        running = self._builds.get(image_id)
        if running is None:
            def line(text: str) -> None:
                if progress is not None:
                    progress.add(text)

            running = self._builds[image_id] = asyncio.ensure_future(
                self.images.build(image_id, definition, line, secrets=secrets))
            running.add_done_callback(lambda _: self._builds.pop(image_id, None))
        return await asyncio.shield(running)

    async def _build_command(self, image_id: str, definition: dict[str, Any],
                             secrets: dict[str, dict[str, str]] | None = None) -> None:
        async def send(lines: list[str]) -> None:
            await self.rpc.call("worker.image_progress", {"image_id": image_id, "logs": lines})

        progress: BatchSender[str] = BatchSender(send, what="build log lines")
        final: dict[str, Any] = {"image_id": image_id, "logs": []}
        try:
            await self.build_image(image_id, definition, progress, secrets)
            final["status"] = "ready"
        except BuildError as exc:
            final.update(status="failed", error=str(exc))
        except Exception as exc:
            log.exception("building %s failed", image_id)
            final.update(status="failed", error=f"the worker failed while building: {type(exc).__name__}: {exc}")
        await progress.flush()
        with contextlib.suppress(RpcError):
            await self.rpc.call("worker.image_progress", final)

    async def _image_for(self, task: Task) -> BuiltImage:
        image_id = task.spec.get("image_id") or task.spec["definition"]["image_id"]
        if image_id in self._builds:  # a build_image for it arrived just before
            return await asyncio.shield(self._builds[image_id])
        built = self.images.lookup(image_id)
        if built is not None:
            return built
        definition = task.spec.get("image") or self.images.definition(image_id)
        if definition is None:
            raise BuildError(f"image {image_id} is not built on this worker and its definition is unknown here; "
                             "the control plane must send build_image first")
        task_id = task.spec["task_id"]
        self.system_log(task_id, f"building image {image_id} first")
        progress: BatchSender[str] = BatchSender(self._task_build_log(task_id), what="build log lines")
        try:
            return await self.build_image(image_id, definition, progress)
        finally:
            await progress.flush()

    def _task_build_log(self, task_id: str) -> Any:
        async def send(lines: list[str]) -> None:
            for text in lines:
                self.system_log(task_id, text)
        return send

    # -- tasks --------------------------------------------------------------------------------

    async def _run_task(self, task: Task) -> None:
        spec = task.spec
        task_id = spec["task_id"]
        scratch = self.home / "tasks" / task_id
        begun = time.perf_counter()
        try:
            image = await self._image_for(task)
            mounts = task_mounts(spec)
            mount_root = await self.mounts.ensure(mounts)
            image_ms = (time.perf_counter() - begun) * 1000
            if task.stop_requested:
                await self.report(task_id, "exited", message="stopped before it started")
                return
            gpus = self.allocator.allocate(task_id, (spec.get("resources") or {}).get("gpu"))
            scratch.mkdir(parents=True, exist_ok=True)
            cspec = container_spec(self.runtime, spec, image, source_dir=source_dir(mount_root, mounts),
                                   mount_root=mount_root, scratch=scratch, gpu_indices=gpus,
                                   host_has_gpus=bool(self.gpus))
            cspec.snapshot = cspec.snapshot or snapshot_source(spec, image)  # whatever the runtime's spec maker
            await self.storage_mounts.attach(spec, cspec, scratch, self.runtime.name)  # volumes, buckets
            await self.runtime.prepare(cspec)
            await self.runtime.start(cspec, self._on_output)
        except Exception as exc:
            message = str(exc) if isinstance(exc, BuildError) else f"{type(exc).__name__}: {exc}"
            self.system_log(task_id, f"container could not start: {message}")
            await self._flush_logs()
            # A broken image is the function's; anything else (runtime, mounts) is this worker's fault.
            await self.report(task_id, "exited", message=f"container could not start: {message}",
                              cause="image" if isinstance(exc, BuildError) else "start_error")
            await self.storage_mounts.detach(task_id)
            self._forget(task_id, scratch)
            return
        task.state = "running"
        profile = {"image_ms": round(image_ms, 3), **self.snapshots.start_profile(task_id)}
        how = "forked from a memory snapshot" if profile.get("how") == "fork" else "started"
        self.system_log(task_id, f"container {how} on worker {self.worker_id} ({self.runtime.name} runtime)")
        await self.report(task_id, "running", profile=profile)
        if task.stop_requested:
            await self.runtime.stop(task_id, kill=task.kill, grace=self.stop_grace)
        code = await self.runtime.wait(task_id)
        await self.storage_mounts.detach(task_id)  # the last bucket sync
        task.state = "exited"
        message = f"exited with code {code}"
        if code > 128:
            # A stop we asked for (app stopped, scaled down) is not a kill the user should worry about.
            message = (f"stopped (signal {code - 128})" if task.stop_requested
                       else f"killed by signal {code - 128}")
        explained = self.runtime.exit_reason(task_id) if isinstance(self.runtime, ExplainsExits) else None
        cause = None
        if task.stop_requested:  # we stopped it (docs/faults.md): not the function's fault nor an outside kill
            cause = "worker_stopping" if task.shutting_down else "stopped"
        if explained is not None:  # e.g. ("oom", "the container exceeded its memory limit of 64 MiB ...")
            cause, message = explained
        if code != 0 and task.stderr_tail and not task.stop_requested:
            message += "; last output:\n" + "\n".join(task.stderr_tail)
        self.system_log(task_id, f"container {message}")
        await self._flush_logs()
        await self.report(task_id, "exited", exit_code=code, message=message, cause=cause,
                          signal_number=code - 128 if code > 128 else None)
        self._forget(task_id, scratch)

    def _forget(self, task_id: str, scratch: Path) -> None:
        self.allocator.release(task_id)
        self.tasks.pop(task_id, None)
        shutil.rmtree(scratch, ignore_errors=True)

    async def stop_task(self, task_id: str, *, kill: bool = False) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            return
        task.stop_requested = True
        task.kill = task.kill or kill
        if task.state == "running":
            await self.runtime.stop(task_id, kill=kill, grace=self.stop_grace)

    async def shutdown(self) -> None:
        runners = [t.runner for t in self.tasks.values() if t.runner is not None]
        for mine in self.tasks.values():
            mine.shutting_down = True
        for task_id in list(self.tasks):
            await self.stop_task(task_id)
        if runners:
            await asyncio.wait(runners, timeout=self.stop_grace + 5)
        for task in list(self._background):
            task.cancel()
        await self.snapshots.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._logs.flush(), 5)
        await self.rpc.close()
