"""The embedded worker: one worker agent started, watched and stopped by the control plane.

`python -m skylift.server` (without `--no-worker`) runs `python -m skylift.worker` as its child
so a laptop gets a complete platform from one process. If the agent dies it is restarted with
exponential backoff (reset once it has stayed up a while); the moment it exits, `on_exit` lets
the control plane write off its containers (docs/faults.md). On shutdown it gets SIGTERM, then
SIGKILL if it lingers, and then `--reap-only` kills what it had no time to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("skylift.server")

MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # seconds up after which a crash restarts it at once again
STOP_TIMEOUT = 10.0


class WorkerSupervisor:
    def __init__(self, server_url: str, home: Path, *, worker_id: str | None = None,
                 on_exit: Callable[[int], None] | None = None) -> None:
        """`on_exit(code)` runs as soon as the agent's process is gone (before any restart): the control
        plane writes its containers off at once instead of waiting for it to come back."""
        self.command = [sys.executable, "-m", "skylift.worker", "--server-url", server_url,
                        "--token-file", str(home / "worker_token"), "--home", str(home), "--exit-with-parent",
                        "--parent-pid", str(os.getpid())]
        if worker_id:  # so the control plane knows which worker `on_exit` is about
            self.command += ["--worker-id", worker_id]
        # Kills and removes what a killed agent left (sandboxes, cgroups), without serving.
        self.reap_command = [sys.executable, "-m", "skylift.worker", "--reap-only", "--home", str(home)]
        self.on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="skylift-worker-supervisor")

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = MIN_BACKOFF
        while not self._stopping:
            started = loop.time()
            try:
                # stdout/stderr are inherited: the launcher sends both to server.log.
                self._proc = await asyncio.create_subprocess_exec(*self.command, stdin=asyncio.subprocess.DEVNULL)
            except OSError as exc:
                log.error("could not start the worker agent (%s); retrying in %.1fs", exc, backoff)
            else:
                log.info("started the worker agent (pid %d)", self._proc.pid)
                code = await self._proc.wait()
                if self._stopping:
                    return
                log.warning("the worker agent exited with code %s", code)
                if self.on_exit is not None:
                    try:
                        self.on_exit(code)
                    except Exception:
                        log.exception("writing off the worker agent's containers failed")
                if loop.time() - started > STABLE_AFTER:
                    backoff = MIN_BACKOFF
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _reap(self) -> None:
        try:
            reaper = await asyncio.create_subprocess_exec(*self.reap_command, stdin=asyncio.subprocess.DEVNULL)
            await asyncio.wait_for(reaper.wait(), STOP_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            log.error("could not reap the worker agent's leftover containers: %s", exc)

    async def stop(self) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                await self._reap()  # it had no time to stop its containers: nothing may outlive us
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
