"""Worker agents as the control plane sees them: resources, what they run, and their command queue.

A worker connects to the control plane (never the reverse), registers its resources, and
long-polls `worker.poll` for commands (`start_task`, `stop_task`, `build_image`). Commands wait in
the worker's queue until polled, so a worker that reconnects picks up what was sent meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..._protocol import ids
from ..longpoll import Signal
from ..policy.placement import Placed, WorkerView


@dataclass(eq=False)
class Worker:
    worker_id: str
    hostname: str
    cpu: float
    memory_mb: int
    gpus: dict[str, int]
    labels: dict[str, str]
    runtimes: list[str]
    server_url: str  # the address its containers should use
    connected: bool = True
    disconnected_at: float | None = None
    registered_at: float = 0.0
    commands: list[dict[str, Any]] = field(default_factory=list)
    signal: Signal = field(default_factory=Signal)
    used_cpu: float = 0.0
    used_memory_mb: int = 0
    used_gpus: dict[str, int] = field(default_factory=dict)
    n_tasks: int = 0
    session: object = None  # the connection it registered on

    def send(self, command: dict[str, Any]) -> None:
        self.commands.append(command)
        self.signal.notify()

    def take_commands(self) -> list[dict[str, Any]]:
        commands, self.commands = self.commands, []
        return commands

    def reserve(self, placed: Placed) -> None:
        self.used_cpu += placed.cpu
        self.used_memory_mb += placed.memory_mb
        if placed.gpu_type:
            self.used_gpus[placed.gpu_type] = self.used_gpus.get(placed.gpu_type, 0) + placed.gpu_count
        self.n_tasks += 1

    def release(self, placed: Placed) -> None:
        self.used_cpu = max(0.0, self.used_cpu - placed.cpu)
        self.used_memory_mb = max(0, self.used_memory_mb - placed.memory_mb)
        if placed.gpu_type:
            self.used_gpus[placed.gpu_type] = max(0, self.used_gpus.get(placed.gpu_type, 0) - placed.gpu_count)
        self.n_tasks = max(0, self.n_tasks - 1)

    def view(self) -> WorkerView:
        return WorkerView(self.worker_id, self.cpu, self.memory_mb, dict(self.gpus), self.used_cpu,
                          self.used_memory_mb, dict(self.used_gpus), self.n_tasks, dict(self.labels))

    def info(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "hostname": self.hostname,
                "resources": {"cpu": self.cpu, "memory_mb": self.memory_mb, "gpus": dict(self.gpus)},
                "labels": dict(self.labels), "runtimes": list(self.runtimes), "connected": self.connected,
                "n_tasks": self.n_tasks}


class Workers:
    def __init__(self) -> None:
        self._workers: dict[str, Worker] = {}

    def register(self, worker_id: str | None, *, hostname: str, resources: dict[str, Any], labels: dict[str, str],
                 runtimes: list[str], server_url: str, now: float) -> Worker:
        gpus = {str(k): int(v) for k, v in (resources.get("gpus") or {}).items()}
        existing = self._workers.get(worker_id) if worker_id else None
        if existing is not None:  # a reconnect: its containers and queued commands are still ours
            existing.hostname, existing.gpus, existing.labels = hostname, gpus, labels
            existing.cpu = float(resources.get("cpu") or existing.cpu)
            existing.memory_mb = int(resources.get("memory_mb") or existing.memory_mb)
            existing.runtimes, existing.server_url = runtimes, server_url
            existing.connected, existing.disconnected_at = True, None
            return existing
        worker = Worker(worker_id or ids.new_id("worker"), hostname, float(resources.get("cpu") or 1.0),
                        int(resources.get("memory_mb") or 1024), gpus, labels, runtimes, server_url,
                        registered_at=now)
        self._workers[worker.worker_id] = worker
        return worker

    def get(self, worker_id: str) -> Worker | None:
        return self._workers.get(worker_id)

    def all(self) -> list[Worker]:
        return list(self._workers.values())

    def connected(self) -> list[Worker]:
        return [w for w in self._workers.values() if w.connected]

    def remove(self, worker: Worker) -> None:
        self._workers.pop(worker.worker_id, None)
