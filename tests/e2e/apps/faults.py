"""Containers that take a while to boot, to kill them (or their worker) while they do (test_fault_recovery)."""

from __future__ import annotations

import time

import skylift as modal

app = modal.App("e2e-faults")


@app.cls()
class SlowBoot:
    @modal.enter()
    def boot(self) -> None:
        time.sleep(1.5)  # a cold start long enough to be killed during

    @modal.method()
    def double(self, x: int) -> int:
        return 2 * x


@app.function()
def stubborn(seconds: float) -> None:
    """A long input: its container drains it on SIGTERM, so only a kill ends it before `seconds`."""
    time.sleep(seconds)
