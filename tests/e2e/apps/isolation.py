"""Probes run through the public API to check that containers are isolated (tests/e2e/test_isolation.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import skylift as modal

from .probes import cgroup_limits

app = modal.App("e2e-isolation")


@app.function()
def probe(host_path: str) -> dict[str, Any]:
    processes = []
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                processes.append(f.read().replace(b"\0", b" ").decode(errors="replace").strip())
        except OSError:
            continue
    return {"sees_host_file": os.path.exists(host_path), "debian": open("/etc/debian_version").read().strip(),
            "exe": sys.executable, "prefix": sys.prefix, "processes": processes, "pid": os.getpid(),
            "sees_server_home": os.path.exists(os.environ.get("SKYLIFT_TEST_HOME", "/nonexistent"))}


@app.function()
def neighbour(tag: str) -> int:
    # Leaves a process running in this container (it stays warm), for probe() to look for.
    return subprocess.Popen(["sleep", tag], start_new_session=True).pid


@app.function(memory=64)
def hog() -> int:
    data = bytearray(512 << 20)
    return len(data)


@app.function(cpu=0.25, memory=96)
def limits() -> dict[str, str]:
    return cgroup_limits()


@app.function(block_network=True)
def offline() -> list[str]:
    import socket

    return [name for _, name in socket.if_nameindex()]
