"""The limits a container runs under: what its function asked for, else defaults that protect the host.

Pure: `container_limits(asked, placed, host)` decides; the container runtime enforces (cgroups for CPU
and memory, a size-limited filesystem for the writable layer and /tmp). docs/containers.md, "Default
limits", gives the values and why:

    CPU     request = cpu= (else 0.125 core, Modal's default): the container's weight (cpu.shares) when
            CPUs are contended. Hard cap = the cpu= limit if a (request, limit) pair gave one, else the
            cpu= request itself (as before), else Modal's default soft limit, request + 16 cores, at
            most the host's cores.
    memory  hard limit = the memory= limit if a pair gave one, else the memory= request (as before),
            else half the host's memory, at most 8 GiB and never below the request (Modal sets no
            limit by default; one runaway container must not take the host's memory).
    disk    ephemeral_disk= MiB, else 10 GiB (Docker's devicemapper default base size): the writable
            layer, /tmp and /root together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

DEFAULT_CPU_REQUEST = 0.125  # cores: Modal's default request
DEFAULT_CPU_HEADROOM = 16.0  # cores above the request: Modal's default soft limit
DEFAULT_MEMORY_REQUEST_MB = 128  # Modal's default request
DEFAULT_MEMORY_LIMIT_MAX_MB = 8192
DEFAULT_EPHEMERAL_DISK_MB = 10240


@dataclass(frozen=True)
class Host:
    cpus: int
    memory_mb: int

    @classmethod
    def this(cls) -> Host:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return cls(cpus=len(os.sched_getaffinity(0)), memory_mb=pages * page_size >> 20)


@dataclass(frozen=True)
class ContainerLimits:
    cpu_request: float  # cores
    cpu_limit: float  # cores
    memory_limit_mb: int
    ephemeral_disk_mb: int


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def container_limits(asked: dict[str, Any], placed: dict[str, Any], host: Host) -> ContainerLimits:
    """Limits from a FunctionDefinition's `resources` (`asked`) and the task's (`placed`: the request the
    scheduler reserved, which fills in the defaults of what was not asked).

    Example:
        >>> host = Host(cpus=32, memory_mb=65536)
        >>> container_limits({}, {}, host)
        ContainerLimits(cpu_request=0.125, cpu_limit=16.125, memory_limit_mb=8192, ephemeral_disk_mb=10240)
        >>> container_limits({"cpu": 0.5, "memory": 64, "ephemeral_disk": 512}, {}, host)
        ContainerLimits(cpu_request=0.5, cpu_limit=0.5, memory_limit_mb=64, ephemeral_disk_mb=512)
        >>> container_limits({"cpu": 1.0, "cpu_limit": 4.0, "memory": 512, "memory_limit": 2048}, {}, host)
        ContainerLimits(cpu_request=1.0, cpu_limit=4.0, memory_limit_mb=2048, ephemeral_disk_mb=10240)
        >>> container_limits({}, {}, Host(cpus=2, memory_mb=4096))
        ContainerLimits(cpu_request=0.125, cpu_limit=2.0, memory_limit_mb=2048, ephemeral_disk_mb=10240)
    """
    cpu_asked = _number(asked.get("cpu"))
    cpu_request = cpu_asked or _number(placed.get("cpu")) or DEFAULT_CPU_REQUEST
    cpu_limit = _number(asked.get("cpu_limit")) or cpu_asked
    if cpu_limit is None:
        cpu_limit = min(cpu_request + DEFAULT_CPU_HEADROOM, float(max(host.cpus, 1)))
    memory_asked = _number(asked.get("memory"))
    memory_limit = _number(asked.get("memory_limit")) or memory_asked
    if memory_limit is None:
        request = _number(placed.get("memory")) or DEFAULT_MEMORY_REQUEST_MB
        memory_limit = max(request, min(DEFAULT_MEMORY_LIMIT_MAX_MB, host.memory_mb // 2))
    disk = _number(asked.get("ephemeral_disk")) or _number(placed.get("ephemeral_disk")) or DEFAULT_EPHEMERAL_DISK_MB
    return ContainerLimits(cpu_request=cpu_request, cpu_limit=max(cpu_limit, cpu_request),
                           memory_limit_mb=int(memory_limit), ephemeral_disk_mb=int(disk))
