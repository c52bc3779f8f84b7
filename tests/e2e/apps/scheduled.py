"""A deployed app with a schedule (tests/e2e/test_schedules.py)."""

from __future__ import annotations

import time

import skylift as modal

app = modal.App("e2e-scheduled")


@app.function(schedule=modal.Period(seconds=1))
def tick() -> None:
    print(f"tick at {time.time():.3f}")
