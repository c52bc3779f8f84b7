"""The container's half of a cold-start profile: how long each phase of its start took.

The worker measures what happens before the process runs (image, process start or fork); the
container measures the rest and sends it with `container.ready {profile}`; the control plane adds
the wait for the first input and logs the whole as one "cold start" line (`server/execution/profiles.py`).

    profile = StartProfile.from_env()          # boot_ms: worker's spawn -> this code running
    with profile.phase("import_ms"):
        ...
    await rpc.call("container.ready", {"profile": profile.wire()})

Every figure is a duration in milliseconds, measured on one clock by one process, so machines
with different clocks never mix their timestamps.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Set by the worker just before it starts the process: wall-clock seconds.
ENV_SPAWNED_AT = "SKYLIFT_SPAWNED_AT"

PHASES = ("boot_ms", "connect_ms", "import_ms", "snap_hooks_ms", "enter_ms")


@dataclass
class StartProfile:
    how: str = "process"  # "process": a fresh interpreter; "fork": forked from a memory snapshot
    phases: dict[str, float] = field(default_factory=dict)
    # For a fork: what the template spent once, so that this container didn't.
    snapshot: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> StartProfile:
        profile = cls()
        spawned = os.environ.get(ENV_SPAWNED_AT)
        if spawned:
            with contextlib.suppress(ValueError):
                profile.phases["boot_ms"] = max(0.0, (time.time() - float(spawned)) * 1000)
        return profile

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + (time.perf_counter() - start) * 1000

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"how": self.how, **{k: round(v, 3) for k, v in self.phases.items()}}
        if self.snapshot:
            out["snapshot"] = {k: round(v, 3) for k, v in self.snapshot.items()}
        return out
