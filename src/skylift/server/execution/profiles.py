"""Cold-start profiles: where a container's start went, phase by phase, and the log line about it.

Three parties measure, each with its own clock and only durations:

    control plane   created (start_task queued) ...................... first input handed out
    worker          image ready (build/lookup + mounts), process start or fork (+ template, once)
    container       boot (interpreter + runtime), connect, imports, snap=True hooks, enter hooks

The worker's figures arrive with `worker.report {state: running, profile}`, the container's with
`container.ready {profile}`; the control plane adds "first input" (ready -> the first input leased
to it) and the total (created -> first input, or -> ready for a warm container nobody called
yet). Once it has all of them it writes one system line to the app's log, e.g.

    cold start 41 ms (forked from a memory snapshot): image 0.4 ms, fork 3.1 ms, connect 1.9 ms,
    snap=False hooks 0.2 ms, first input 1.2 ms; the snapshot saved imports 301 ms + snap=True hooks 252 ms

`skylift container list` shows the total and `skylift container profile ID` every phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKER_FIELDS = ("how", "image_ms", "start_ms", "template_ms", "pid", "template_pid", "note")
CONTAINER_FIELDS = ("how", "boot_ms", "fork_ms", "connect_ms", "import_ms", "snap_hooks_ms", "enter_ms")


def _numbers(raw: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for name in names:
        value = raw.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) or (name in ("how", "note") and isinstance(value, str)):
            out[name] = value
    return out


@dataclass
class ColdStart:
    created_at: float  # control-plane clock
    worker: dict[str, Any] = field(default_factory=dict)
    container: dict[str, Any] = field(default_factory=dict)
    saved: dict[str, float] = field(default_factory=dict)  # what a snapshot spared this container
    ready_at: float | None = None
    first_input_at: float | None = None
    waiting_for_input: bool = False  # ready while inputs were queued: the line waits for the first one
    logged: bool = False

    def on_worker(self, raw: Any) -> None:
        self.worker = _numbers(raw, WORKER_FIELDS)

    def on_ready(self, raw: Any, now: float, inputs_waiting: bool) -> None:
        if self.ready_at is not None:
            return
        self.ready_at = now
        self.waiting_for_input = inputs_waiting
        self.container = _numbers(raw, CONTAINER_FIELDS)
        snapshot = raw.get("snapshot") if isinstance(raw, dict) else None
        self.saved = {k: float(v) for k, v in _numbers(snapshot, ("import_ms", "snap_hooks_ms")).items()}

    def on_first_input(self, now: float) -> None:
        if self.first_input_at is None and self.ready_at is not None:
            self.first_input_at = now

    @property
    def forked(self) -> bool:
        return self.worker.get("how") == "fork" or self.container.get("how") == "fork"

    @property
    def complete(self) -> bool:
        """Everything is in for the log line."""
        if self.ready_at is None or not self.worker:
            return False
        return self.first_input_at is not None or not self.waiting_for_input

    def total_ms(self) -> float | None:
        end = self.first_input_at if self.first_input_at is not None else self.ready_at
        return None if end is None else max(0.0, (end - self.created_at) * 1000)

    def phases(self) -> list[tuple[str, float]]:
        """(label, ms) in the order they happened; only the phases that were measured."""
        w, c = self.worker, self.container
        out: list[tuple[str, float]] = []

        def add(label: str, value: Any) -> None:
            if isinstance(value, (int, float)):
                out.append((label, float(value)))

        add("image", w.get("image_ms"))
        if self.forked:
            template = w.get("template_ms")
            add("snapshot template", template)
            start = w.get("start_ms")
            if isinstance(c.get("fork_ms"), (int, float)):  # fork() until the child is set up: the critical path
                add("fork", c["fork_ms"])
            elif isinstance(start, (int, float)):
                add("fork", max(0.0, start - float(template or 0.0)))
        else:
            add("process start", w.get("start_ms"))
            add("boot", c.get("boot_ms"))
        add("connect", c.get("connect_ms"))
        if not self.forked:
            add("imports", c.get("import_ms"))
            add("snap=True hooks", c.get("snap_hooks_ms"))
        add("snap=False hooks" if self.forked else "enter hooks", c.get("enter_ms"))
        if self.first_input_at is not None and self.ready_at is not None:
            add("first input", (self.first_input_at - self.ready_at) * 1000)
        total = self.total_ms()
        if out and total is not None:
            # Whatever no party measured: scheduling, the worker's own work, messages between them.
            add("other", max(0.0, total - sum(ms for _, ms in out)))
        return out

    def line(self) -> str:
        total = self.total_ms() or 0.0
        how = " (forked from a memory snapshot)" if self.forked else ""
        head = f"cold start {_ms(total)}{how}" if self.first_input_at is not None else \
            f"container ready in {_ms(total)}{how}, waiting for inputs"
        text = head + ": " + ", ".join(f"{label} {_ms(ms)}" for label, ms in self.phases())
        if self.forked and self.saved:
            spared = " + ".join(f"{label} {_ms(self.saved[key])}" for key, label in
                                (("import_ms", "imports"), ("snap_hooks_ms", "snap=True hooks")) if key in self.saved)
            text += f"; the snapshot saved {spared}"
        note = self.worker.get("note")
        if note:
            text += f" ({note})"
        return text

    def wire(self) -> dict[str, Any]:
        total = self.total_ms()
        return {
            "how": "fork" if self.forked else (self.worker.get("how") or self.container.get("how") or ""),
            "total_ms": None if total is None else round(total, 3),
            "phases": [[label, round(ms, 3)] for label, ms in self.phases()],
            "saved": {k: round(v, 3) for k, v in self.saved.items()},
            "worker": dict(self.worker),
            "container": dict(self.container),
            "ready": self.ready_at is not None,
            "first_input": self.first_input_at is not None,
        }


def _ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"
