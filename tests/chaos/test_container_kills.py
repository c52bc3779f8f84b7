"""Containers and the worker killed from outside during a map: the map completes, correct and in order.

Outside kills are infrastructure faults (issue 9, "faults are classified"): they re-queue the
inputs without charging the function's retries or the crash-loop streak, warm or cold.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import chaos_apps
import pytest
from chaos_platform import ChaosPlatform, container_runtime_unavailable, leftovers, running
from tiers import LONG, Figures, size

import skylift as modal


class ContainerKiller:
    """SIGKILLs one of the platform's container processes every `interval` s (the first after `first`)."""

    def __init__(self, platform: ChaosPlatform, interval: float, first: float) -> None:
        self.platform = platform
        self.interval = interval
        self.first = first
        self.kills = 0
        self._random = random.Random(9)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-container-killer", daemon=True)

    def __enter__(self) -> ContainerKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        wait = self.first
        while not self._stop.wait(wait):
            wait = self.interval
            pids = self.platform.container_pids()
            if pids:
                try:
                    os.kill(self._random.choice(pids), signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass


def _map_with_container_kills(home: Path, figures: Figures, *, warm: bool, runtime: str = "process") -> None:
    # Long enough for several kills: ~n x delay / 16 containers (8 s fast, 25 s long).
    n, delay = size(300, 2000), size(400, 200) / 1000
    figures.values.update(inputs=n, warm=warm, runtime=runtime)
    with running(home, runtime=runtime) as platform:
        chaos_apps.app.deploy(name="chaos")
        square = modal.Function.from_name("chaos", "square")
        if warm:
            assert list(square.map(range(32))) == [i * i for i in range(32)]
            figures["containers_before"] = len(platform.container_pids())
        started = time.monotonic()
        # Cold: the first kill lands while the pool is still booting; warm: on a busy container.
        with ContainerKiller(platform, interval=2.0, first=2.0 if warm else 0.3) as killer:
            results = list(square.map(range(n), [delay] * n))
        figures.values.update(container_kills=killer.kills, map_s=round(time.monotonic() - started, 1),
                              received=len(results),
                              wrong=sum(1 for i, r in enumerate(results) if r != i * i))
        assert results == [i * i for i in range(n)]


@pytest.mark.timeout(1800 if LONG else 120)
def test_map_survives_container_kills_warm(chaos_home: Path, chaos_figures: Figures) -> None:
    _map_with_container_kills(chaos_home, chaos_figures, warm=True)


@pytest.mark.timeout(1800 if LONG else 120)
def test_map_survives_container_kills_cold(chaos_home: Path, chaos_figures: Figures) -> None:
    _map_with_container_kills(chaos_home, chaos_figures, warm=False)


@pytest.mark.root
@pytest.mark.timeout(1800 if LONG else 180)
def test_map_survives_container_kills_cold_container_runtime(chaos_home: Path, chaos_figures: Figures) -> None:
    """Issue 9 reproduced this one on the container runtime: kills during cold starts failed the pool."""
    if reason := container_runtime_unavailable():
        pytest.skip(reason)
    _map_with_container_kills(chaos_home, chaos_figures, warm=False, runtime="container")


@pytest.mark.parametrize("runtime", ["process", pytest.param("container", marks=pytest.mark.root)])
@pytest.mark.timeout(1800 if LONG else 180)
def test_map_survives_worker_kill_during_boot(chaos_home: Path, chaos_figures: Figures, runtime: str) -> None:
    if runtime == "container" and (reason := container_runtime_unavailable()):
        pytest.skip(reason)
    n = size(200, 1000)
    chaos_figures["runtime"] = runtime
    with running(chaos_home, runtime=runtime) as platform:
        chaos_apps.app.deploy(name="chaos")
        square = modal.Function.from_name("chaos", "square")
        result: dict[str, Any] = {}

        def caller() -> None:
            try:
                result["values"] = list(square.map(range(n), [0.01] * n))
            except BaseException as exc:
                result["error"] = exc

        thread = threading.Thread(target=caller, daemon=True)
        started = time.monotonic()
        thread.start()
        # Kill the worker agent as soon as its first containers exist: they are booting.
        deadline = time.monotonic() + 30
        while not platform.container_pids():
            assert time.monotonic() < deadline, "no container started"
            time.sleep(0.01)
        workers = platform.worker_pids()
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        thread.join(100)
        values = result.get("values") or []
        chaos_figures.values.update(inputs=n, workers_killed=len(workers), caller_error=repr(result.get("error")),
                                    map_s=round(time.monotonic() - started, 1), received=len(values),
                                    wrong=sum(1 for i, r in enumerate(values) if r != i * i))
        assert not thread.is_alive(), "the map did not finish within 100 s of the worker kill"
        assert "error" not in result, f"the map failed: {result['error']!r}"
        assert values == [i * i for i in range(n)]
    # The killed worker's sandboxes are reaped: nothing of this platform outlives its stop.
    left = chaos_figures["left_after_stop"] = leftovers(platform)
    assert left == {"mounts": 0, "processes": 0}, left


@pytest.mark.parametrize("runtime", ["process", pytest.param("container", marks=pytest.mark.root)])
@pytest.mark.timeout(1800 if LONG else 180)
def test_map_survives_every_booting_container_killed(chaos_home: Path, chaos_figures: Figures, runtime: str) -> None:
    """Several starts killed at once, again and again: outside kills are not a crash loop."""
    if runtime == "container" and (reason := container_runtime_unavailable()):
        pytest.skip(reason)
    n, rounds = size(200, 1000), size(3, 6)
    chaos_figures.values.update(runtime=runtime, inputs=n, rounds=rounds)
    with running(chaos_home, runtime=runtime) as platform:
        chaos_apps.app.deploy(name="chaos")
        square = modal.Function.from_name("chaos", "square")
        result: dict[str, Any] = {}

        def caller() -> None:
            try:
                result["values"] = list(square.map(range(n), [0.01] * n))
            except BaseException as exc:
                result["error"] = exc

        thread = threading.Thread(target=caller, daemon=True)
        started = time.monotonic()
        thread.start()
        killed: set[int] = set()
        for _ in range(rounds):
            # The next wave of containers, killed as soon as it appears: while it boots.
            deadline = time.monotonic() + 30
            while not (wave := set(platform.container_pids()) - killed) and thread.is_alive():
                assert time.monotonic() < deadline, \
                    "no new container started after a wave was killed; the platform's log ends:\n" + \
                    "\n".join(platform.log().splitlines()[-40:])
                time.sleep(0.005)
            for pid in wave:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed |= wave
        thread.join(100)
        values = result.get("values") or []
        chaos_figures.values.update(containers_killed=len(killed), caller_error=repr(result.get("error")),
                                    map_s=round(time.monotonic() - started, 1), received=len(values),
                                    wrong=sum(1 for i, r in enumerate(values) if r != i * i))
        assert not thread.is_alive(), "the map did not finish within 100 s of the kills"
        assert "error" not in result, f"the map failed: {result['error']!r}"
        assert values == [i * i for i in range(n)]
