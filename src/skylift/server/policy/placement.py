"""Where a new container runs: a pure choice over a snapshot of the workers.

    place(request, workers) -> Placed | Unplaceable

The least-loaded worker that fits wins (load = the larger of its CPU and memory fractions after
placing; then fewer containers; then worker id, so the choice is deterministic). CPU and memory
requests above a machine's size are clamped to the machine, so `cpu=8` still runs on a 4-core
laptop (alone). GPU requests go only to workers advertising that type; when no connected worker
offers it at all the answer is permanent, so callers fail fast instead of queueing forever.

    choose_evictions(request, workers, idle) -> task ids

When every worker is full, idle warm containers of other functions are worth less than a queued
input: the fewest idle containers (longest idle first) whose resources make room are chosen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ... import _resources

DEFAULT_CPU = 0.125
DEFAULT_MEMORY_MB = 128

_GPU_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*?!?)(?::(\d+))?$")


@dataclass(frozen=True)
class GpuOption:
    type: str  # upper case; "ANY" matches every GPU
    count: int = 1


def parse_gpu(spec: object) -> tuple[GpuOption, ...]:
    """The GPU options of a definition's `resources.gpu`, preferred first.

    The SDK sends `{"type": "H100", "count": 2, "fallbacks": [{"type": "A100", "count": 1}]}`
    (`skylift._resources.parse_gpu`); the strings it is made from (`"A100"`, `"h100:2"`, `"any"`,
    `"H100!"`, or a list of those) are accepted too.
    """
    if spec is None or spec == "":
        return ()
    if isinstance(spec, dict):
        fallbacks = spec.get("fallbacks") or []
        if not isinstance(fallbacks, list):
            raise ValueError(f"gpu {spec!r}: 'fallbacks' must be a list")
        return tuple(_option(one) for one in [spec, *fallbacks])
    return tuple(_option(one) for one in (spec if isinstance(spec, list) else [spec]))


def _option(one: object) -> GpuOption:
    if isinstance(one, dict):
        kind, count = one.get("type"), one.get("count", 1)
        if not isinstance(kind, str) or not kind or not isinstance(count, int) or isinstance(count, bool):
            raise ValueError(f"gpu {one!r} is not a GPU spec like {{'type': 'A100', 'count': 1}}")
    else:
        match = _GPU_SPEC.match(one) if isinstance(one, str) else None
        if match is None:
            raise ValueError(f"gpu {one!r} is not a GPU spec like 'A100', 'H100:2' or 'any'")
        kind, count = match.group(1), int(match.group(2) or 1)
    if count < 1:
        raise ValueError(f"gpu {one!r} asks for {count} GPUs; ask for at least 1")
    return GpuOption(kind.upper(), count)


def gpu_matches(wanted: str, offered: str) -> bool:
    """Whether a worker's GPU type serves a request (Modal's upgrades: see `skylift._resources`)."""
    offered = offered.upper()
    return _resources.gpu_matches(wanted, offered) or offered.startswith(wanted + "-")


@dataclass(frozen=True)
class Request:
    cpu: float = DEFAULT_CPU
    memory_mb: int = DEFAULT_MEMORY_MB
    gpus: tuple[GpuOption, ...] = ()
    # modal.SchedulerPlacement: (worker label, accepted values), e.g. ("region", ("us-east", "us-west")).
    labels: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class WorkerView:
    worker_id: str
    cpu: float
    memory_mb: int
    gpus: Mapping[str, int] = field(default_factory=dict)
    used_cpu: float = 0.0
    used_memory_mb: int = 0
    used_gpus: Mapping[str, int] = field(default_factory=dict)
    n_tasks: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)  # `skylift worker --label KEY=VALUE`


@dataclass(frozen=True)
class Placed:
    worker_id: str
    cpu: float
    memory_mb: int
    gpu_type: str | None = None  # the worker's own name for the GPU type granted
    gpu_count: int = 0


@dataclass(frozen=True)
class Unplaceable:
    reason: str
    permanent: bool  # no connected worker could ever run it, as opposed to "all busy now"


def _describe(spec: tuple[GpuOption, ...]) -> str:
    return " or ".join(f"'{o.type}'" + (f" x{o.count}" if o.count > 1 else "") for o in spec)


def place(request: Request, workers: list[WorkerView]) -> Placed | Unplaceable:
    if not workers:
        return Unplaceable("no worker is connected yet", permanent=False)
    if request.labels:
        matching = [w for w in workers if all(w.labels.get(key) in values for key, values in request.labels)]
        if not matching:
            return Unplaceable(_label_mismatch(request, workers), permanent=True)
        workers = matching
    if request.gpus:
        offered = sorted({t for w in workers for t, n in w.gpus.items() if n > 0})
        capable = [w for w in workers if any(
            gpu_matches(o.type, t) and n >= o.count for o in request.gpus for t, n in w.gpus.items())]
        if not capable:
            have = ", ".join(offered) if offered else "none"
            return Unplaceable(
                f"no worker offers GPU {_describe(request.gpus)}; connected workers offer: {have}. "
                "Connect a worker with that GPU, or change the function's gpu=", permanent=True)
    best: tuple[tuple[float, int, str], Placed] | None = None
    for w in workers:
        cpu = min(request.cpu, w.cpu)
        mem = min(request.memory_mb, w.memory_mb)
        if w.used_cpu + cpu > w.cpu + 1e-9 or w.used_memory_mb + mem > w.memory_mb:
            continue
        gpu_type, gpu_count = None, 0
        if request.gpus:
            grant = _grant_gpu(request.gpus, w)
            if grant is None:
                continue
            gpu_type, gpu_count = grant
        load = max((w.used_cpu + cpu) / w.cpu if w.cpu > 0 else 1.0,
                   (w.used_memory_mb + mem) / w.memory_mb if w.memory_mb > 0 else 1.0)
        key = (load, w.n_tasks, w.worker_id)
        if best is None or key < best[0]:
            best = (key, Placed(w.worker_id, cpu, mem, gpu_type, gpu_count))
    if best is None:
        return Unplaceable("every worker that fits is busy; the container starts when one frees up", permanent=False)
    return best[1]


def _label_mismatch(request: Request, workers: list[WorkerView]) -> str:
    want = ", ".join(f"{key} in {list(values)}" for key, values in request.labels)
    have = "; ".join(f"{w.worker_id}: " + (", ".join(f"{k}={v}" for k, v in sorted(w.labels.items())) or "no labels")
                     for w in workers)
    return (f"no worker matches scheduler_placement ({want}); connected workers have {have}. Start a worker "
            "with those labels (`skylift worker --label region=...`), or change scheduler_placement=")


def _grant_gpu(options: tuple[GpuOption, ...], worker: WorkerView) -> tuple[str, int] | None:
    for option in options:
        for gpu_type, total in sorted(worker.gpus.items()):
            if gpu_matches(option.type, gpu_type) and worker.used_gpus.get(gpu_type, 0) + option.count <= total:
                return gpu_type, option.count
    return None


@dataclass(frozen=True)
class IdleContainer:
    task_id: str
    worker_id: str
    cpu: float
    memory_mb: int
    gpu_type: str | None = None
    gpu_count: int = 0
    idle_since: float = 0.0


def choose_evictions(request: Request, workers: list[WorkerView], idle: list[IdleContainer]) -> tuple[str, ...]:
    """The fewest idle containers to stop so that `request` fits on one worker (empty: none would do)."""
    best: tuple[str, ...] | None = None
    for w in workers:
        mine = sorted((c for c in idle if c.worker_id == w.worker_id), key=lambda c: (c.idle_since, c.task_id))
        used_cpu, used_mem, used_gpus = w.used_cpu, w.used_memory_mb, dict(w.used_gpus)
        chosen: list[str] = []
        for c in mine:
            used_cpu -= c.cpu
            used_mem -= c.memory_mb
            if c.gpu_type:
                used_gpus[c.gpu_type] = used_gpus.get(c.gpu_type, 0) - c.gpu_count
            chosen.append(c.task_id)
            freed = WorkerView(w.worker_id, w.cpu, w.memory_mb, w.gpus, used_cpu, used_mem, used_gpus, w.n_tasks,
                               w.labels)
            if isinstance(place(request, [freed]), Placed):
                if best is None or len(chosen) < len(best):
                    best = tuple(chosen)
                break
    return best or ()
