"""The two tiers of the fault-injection suite, and where each scenario's figures go.

The fast tier runs in the normal `pytest` run (CI); the long tier runs the same scenarios at full
size when SKYLIFT_CHAOS_LONG=1 (`scripts/chaos`). Every scenario prints one line of figures and
appends it to `chaos-figures.txt` in pytest's base temp directory, so a run leaves a report.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LONG = os.environ.get("SKYLIFT_CHAOS_LONG", "") not in ("", "0")


def size(fast: int, long: int) -> int:
    """A scenario's size: small in CI, the issue's figure in the long tier."""
    return long if LONG else fast


class Figures:
    """One scenario's figures: printed (run pytest with -s to see them) and appended to the report."""

    def __init__(self, report: Path, scenario: str) -> None:
        self.report = report
        self.scenario = scenario
        self.values: dict[str, Any] = {}
        self._started = time.monotonic()

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def emit(self) -> None:
        """Write the line; called once at the end of the scenario (also when it failed)."""
        self.values.setdefault("wall_s", round(time.monotonic() - self._started, 1))
        line = f"[chaos] {self.scenario} ({'long' if LONG else 'fast'}): " + json.dumps(self.values, default=str)
        print(line)
        with self.report.open("a") as f:
            f.write(line + "\n")
