"""Probes run through the public API to check that containers are isolated (tests/e2e/test_isolation.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import skylift as modal

from .probes import cgroup_limits, read_first

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


@app.function()
def defaults() -> dict[str, str]:
    return {**cgroup_limits(), "shares": read_first("/sys/fs/cgroup/cpu/cpu.shares", "/sys/fs/cgroup/cpu.weight")}


@app.function(ephemeral_disk=64, memory=512)
def fill(path: str, fail: bool = False) -> dict[str, Any]:
    """Write up to 256 MiB to `path` on a 64 MiB ephemeral disk; with `fail`, let the error out."""
    written = 0
    try:
        with open(path, "wb") as f:
            while written < 256 << 20:
                f.write(b"x" * (1 << 20))
                written += 1 << 20
            os.fsync(f.fileno())
        error = None
    except OSError as exc:
        if fail:
            raise
        error = exc.errno
    finally:
        if os.path.exists(path):
            os.remove(path)
    mounts = [line.split(" - ")[1].split()[0] for line in open("/proc/self/mountinfo") if line.split()[4] == "/tmp"]
    return {"errno": error, "written": written, "task_id": os.environ["SKYLIFT_TASK_ID"], "tmp_mounts": mounts}
