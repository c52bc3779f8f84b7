"""What this machine offers (CPU, memory, GPUs by type) and which GPUs are handed out.

GPU names from `nvidia-smi` ("NVIDIA A100-SXM4-80GB") are mapped to the canonical types the SDK
accepts (`skylift._resources.GPU_TYPES`: "A100-80GB", "H100", ...), so placement can compare a
function's `gpu="A100"` with what a worker advertises.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._resources import gpu_matches

Runner = Callable[[list[str]], str]


@dataclass(frozen=True)
class Gpu:
    index: int
    type: str
    name: str
    memory_mib: int


def _run_nvidia_smi(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True).stdout


def gpu_type(name: str, memory_mib: int) -> str:
    """The canonical type of a GPU from its `nvidia-smi` name.

    Example:
        >>> gpu_type("NVIDIA A100-SXM4-80GB", 81920), gpu_type("Tesla T4", 15360), gpu_type("NVIDIA H200", 143771)
        ('A100-80GB', 'T4', 'H200')
    """
    upper = name.upper()
    tokens = set(re.split(r"[\s\-_/]+", upper))
    for family in ("B200", "H200", "H100", "L40S", "T4", "L4"):
        if family in tokens:
            return family
    if "A100" in upper:
        return "A100-80GB" if "80GB" in upper or memory_mib > 60_000 else "A100-40GB"
    if "A10G" in tokens or "A10" in tokens:
        return "A10"
    cleaned = re.sub(r"^(NVIDIA|TESLA)\s+", "", upper).strip()
    return re.sub(r"\s+", "-", cleaned) or "UNKNOWN"


def detect_gpus(run: Runner | None = None) -> list[Gpu]:
    """The NVIDIA GPUs `nvidia-smi` lists; none when it is missing or fails."""
    if run is None:
        if shutil.which("nvidia-smi") is None:
            return []
        run = _run_nvidia_smi
    try:
        out = run(["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        memory = int(parts[2]) if parts[2].isdigit() else 0
        gpus.append(Gpu(int(parts[0]), gpu_type(parts[1], memory), parts[1], memory))
    return gpus


def memory_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20))


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resources(gpus: list[Gpu]) -> dict[str, Any]:
    """The `resources` of `worker.register`."""
    by_type: dict[str, int] = {}
    for gpu in gpus:
        by_type[gpu.type] = by_type.get(gpu.type, 0) + 1
    return {"cpu": cpu_count(), "memory_mb": memory_mb(), "gpus": by_type}


def requested_gpus(spec: Any) -> tuple[str, int] | None:
    """(type, count) from a TaskSpec's `resources.gpu`: a parsed dict, "H100:2", or None."""
    if not spec:
        return None
    if isinstance(spec, dict):
        return str(spec.get("type") or "ANY").upper(), int(spec.get("count") or 1)
    text = str(spec)
    name, _, count = text.partition(":")
    return name.strip().upper(), int(count) if count.strip().isdigit() else 1


@dataclass
class GpuAllocator:
    """Which GPU indices each task holds; a task sees only its own (CUDA_VISIBLE_DEVICES)."""

    gpus: list[Gpu]
    held: dict[str, list[int]] = field(default_factory=dict)

    def allocate(self, task_id: str, spec: Any) -> list[int]:
        want = requested_gpus(spec)
        if want is None:
            return []
        kind, count = want
        busy = {i for indices in self.held.values() for i in indices}
        free = [g.index for g in self.gpus if g.index not in busy and gpu_matches(kind, g.type)]
        if len(free) < count:
            have = ", ".join(f"{g.index}:{g.type}" for g in self.gpus) or "none"
            raise RuntimeError(f"task {task_id} needs {count} x {kind} GPU but only {len(free)} matching "
                               f"GPU(s) are free on this worker (GPUs: {have})")
        self.held[task_id] = free[:count]
        return free[:count]

    def release(self, task_id: str) -> None:
        self.held.pop(task_id, None)
