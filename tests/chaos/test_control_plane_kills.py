"""kill -9 of the control plane during a spawn_map and during a .map: nothing lost, wrong or doubled.

The control plane (a real subprocess, restarted on the same home at once after each kill) dies
while inputs are being submitted and run. The caller's view is checked: a `.map` yields every
result once, correct and in order; a `spawn_map`'s items each run (as one input, of one call).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import chaos_apps
import pytest
from chaos_platform import KillLoop, running
from evidence import read_runs, tally
from tiers import LONG, Figures, size

import skylift as modal

# The long tier: 20 kills, each followed by a restart and recovery.
LONG_TIMEOUT = 3600


def _run_caller(target: Any, deadline: float) -> tuple[Any, BaseException | None, bool]:
    """Run the caller in a thread (the kill loop runs in another); (result, error, finished in time)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = target()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="chaos-caller", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    return box.get("result"), box.get("error"), not thread.is_alive()


@pytest.mark.timeout(LONG_TIMEOUT if LONG else 300)
def test_spawn_map_survives_control_plane_kills(chaos_home: Path, chaos_figures: Figures) -> None:
    n, kills = size(1000, 10_000), size(2, 20)
    runs_path = chaos_home / "runs.log"
    chaos_figures.values.update(inputs=n, kills_wanted=kills)
    with running(chaos_home) as platform:
        chaos_apps.app.deploy(name="chaos")
        record = modal.Function.from_name("chaos", "record")
        assert record.remote(-1, str(chaos_home / "warm.log")) == 1  # hydrated and warm before the chaos
        started = time.monotonic()
        # The first kill lands while the inputs are being submitted, the others while they run.
        with KillLoop(platform, kills, first=0.02, interval=1.0) as chaos:
            _, error, finished = _run_caller(lambda: record.spawn_map(range(n), [str(runs_path)] * n, [0.01] * n),
                                             time.monotonic() + 120)
            # Then let the kills land while the spawned inputs run (spawn_map returns once they're stored).
            deadline = time.monotonic() + (LONG_TIMEOUT - 300 if LONG else 150)
            last_count, last_change = -1, time.monotonic()
            while time.monotonic() < deadline:
                count = len({r["i"] for r in read_runs(runs_path)})
                if count != last_count:
                    last_count, last_change = count, time.monotonic()
                if count >= n and chaos.kills >= kills:
                    break
                # No progress for longer than a lease and a restart: nothing more will come.
                if chaos.kills >= kills and time.monotonic() - last_change > 45:
                    break
                time.sleep(0.2)
        figures = tally(read_runs(runs_path), n)
        chaos_figures.values.update(kills=chaos.kills, restart_s=chaos.restart_s, caller_error=repr(error),
                                    caller_finished=finished, run_s=round(time.monotonic() - started, 1), **figures)
        assert chaos.error is None, f"the kill loop failed: {chaos.error!r}"
        assert finished and error is None, f"spawn_map failed for the caller: {error!r}"
        assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["stray"] == 0, figures
        assert figures["calls"] == 1, figures
        del platform


@pytest.mark.timeout(LONG_TIMEOUT if LONG else 300)
def test_map_survives_control_plane_kills(chaos_home: Path, chaos_figures: Figures) -> None:
    n, kills = 2000, size(1, 20)
    chaos_figures.values.update(inputs=n, kills_wanted=kills)
    with running(chaos_home) as platform:
        chaos_apps.app.deploy(name="chaos")
        square = modal.Function.from_name("chaos", "square")
        started = time.monotonic()
        baseline = list(square.map(range(n)))
        chaos_figures["map_s_without_faults"] = round(time.monotonic() - started, 2)
        assert baseline == [i * i for i in range(n)]
        # Slow enough that every kill lands mid-map: ~2k x 20 ms over the pool (fast), 2k x 150 ms
        # with a kill every 0.5 s after each restart (long).
        delay = size(20, 150) / 1000
        started = time.monotonic()
        with KillLoop(platform, kills, first=0.5, interval=size(10, 5) / 10) as chaos:
            results, error, finished = _run_caller(lambda: list(square.map(range(n), [delay] * n)),
                                                   time.monotonic() + (LONG_TIMEOUT - 300 if LONG else 200))
        got: list[Any] = results or []
        expected = [i * i for i in range(n)]
        chaos_figures.values.update(
            kills=chaos.kills, restart_s=chaos.restart_s, caller_error=repr(error), caller_finished=finished,
            map_s_with_kills=round(time.monotonic() - started, 2), received=len(got),
            lost=max(0, n - len(got)), duplicated=max(0, len(got) - n),
            wrong=sum(1 for a, b in zip(got, expected, strict=False) if a != b))
        assert chaos.error is None, f"the kill loop failed: {chaos.error!r}"
        assert finished and error is None, f".map failed for the caller: {error!r}"
        assert got == expected
        del platform
