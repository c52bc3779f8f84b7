"""Memory snapshots on the container runtime (tests/e2e/test_container_snapshots.py).

Each forked container is probed from the inside: what the snapshot left, what it can see of the
others, and what it may do (capabilities, seccomp, mounts, namespaces).
"""

from __future__ import annotations

import ctypes
import os
import socket
import time
from typing import Any

import skylift as modal

from .probes import cgroup_limits

app = modal.App("e2e-container-snapshots")

CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000


def _errno_of(call: Any) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return 0 if call(libc) == 0 else ctypes.get_errno()


def _attempts() -> dict[str, int]:
    """0: the call succeeded; else its errno (EPERM = 1)."""
    return {
        "unshare_user": _errno_of(lambda libc: libc.unshare(CLONE_NEWUSER)),
        "unshare_mount": _errno_of(lambda libc: libc.unshare(CLONE_NEWNS)),
        "mount_tmpfs": _errno_of(lambda libc: libc.mount(b"tmpfs", b"/mnt", b"tmpfs", 0, None)),
    }


@app.cls(enable_memory_snapshot=True, max_containers=3)
class Snapped:
    tag: str = modal.parameter()

    @modal.enter(snap=True)
    def load(self) -> None:
        self.template_unshare_user = _errno_of(lambda libc: libc.unshare(CLONE_NEWUSER))
        self.weights = list(range(10))
        with open("/from-snapshot", "w") as f:
            f.write(self.tag)

    @modal.method()
    def probe(self, write: str = "", hold: float = 0.0) -> dict[str, Any]:
        if write:
            for path in ("/root/written", "/tmp/written", "/dev/shm/written"):
                with open(path, "w") as f:
                    f.write(write)
        time.sleep(hold)
        seen = {}
        for path in ("/root/written", "/tmp/written", "/dev/shm/written"):
            try:
                seen[path] = open(path).read()
            except OSError:
                seen[path] = None
        status = {line.split(":")[0]: line.split(":", 1)[1].strip() for line in open("/proc/self/status")}
        try:
            with open("/proc/sys/kernel/core_pattern", "w") as f:
                f.write("core")
            core_pattern = "writable"
        except OSError as exc:
            core_pattern = f"{type(exc).__name__}: {exc.errno}"
        return {"pid": os.getpid(), "processes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
                "hostname": socket.gethostname(), "weights": self.weights,
                "snapshot_file": open("/from-snapshot").read(),
                "seen": seen, "cap_bnd": status["CapBnd"], "cap_eff": status["CapEff"],
                "no_new_privs": status["NoNewPrivs"], "seccomp": status["Seccomp"], "attempts": _attempts(),
                "template_unshare_user": self.template_unshare_user, "core_pattern": core_pattern,
                "uid_map": open("/proc/self/uid_map").read().split(), "uid": os.getuid(),
                "fork_dirs": {d: os.listdir(d) for d in ("/run/skylift-fork/root", "/run/skylift-fork/layers")
                              if os.path.isdir(d)},
                "task_id": os.environ.get("SKYLIFT_TASK_ID")}


@app.function(enable_memory_snapshot=True, block_network=True)
def offline() -> dict[str, Any]:
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=2).close()
        outbound = "connected"
    except OSError as exc:
        outbound = f"{type(exc).__name__}: {exc.errno}"
    with socket.socket() as server:  # loopback works
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
    return {"outbound": outbound, "interfaces": [line.split(":")[0].strip() for line in open("/proc/net/dev")][2:]}


@app.function(enable_memory_snapshot=True)
def online() -> list[str]:
    return [line.split(":")[0].strip() for line in open("/proc/net/dev")][2:]


@app.function(enable_memory_snapshot=True, memory=64)
def hog() -> int:
    return len(bytearray(512 << 20))


vol = modal.Volume.from_name("e2e-container-snapshots-vol", create_if_missing=True)


@app.cls(enable_memory_snapshot=True, volumes={"/data": vol})
class WithVolume:
    @modal.enter(snap=True)
    def look(self) -> None:
        self.template_saw_volume = os.path.exists("/data/seen-by-template")  # not mounted for the snapshot

    @modal.method()
    def write(self, value: str) -> dict[str, Any]:
        path = f"/data/{value}.txt"
        before = open(path).read() if os.path.exists(path) else None
        with open(path, "w") as f:
            f.write(value)
        open("/data/seen-by-template", "w").close()
        vol.commit()
        return {"before": before, "template_saw_volume": self.template_saw_volume}


@app.function(enable_memory_snapshot=True, cpu=0.25, memory=96)
def limits() -> dict[str, str]:
    return cgroup_limits()


@app.function(enable_memory_snapshot=True)
def orphans() -> dict[str, Any]:
    """Leave daemonized children that exit at once: the container's init must reap them."""
    import subprocess

    for _ in range(3):
        subprocess.run(["sh", "-c", "sleep 0.05 &"], check=True)  # the sleep is orphaned, then exits
    time.sleep(0.5)
    zombies = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    zombies.append(pid)
        except OSError:
            continue
    return {"zombies": zombies}


@app.function(enable_memory_snapshot=True, ephemeral_disk=64, memory=512)
def fill(path: str) -> dict[str, Any]:
    """Write up to 256 MiB to `path` on a 64 MiB ephemeral disk (tests/e2e/test_container_snapshots.py)."""
    written, error = 0, None
    try:
        with open(path, "wb") as f:
            while written < 256 << 20:
                f.write(b"x" * (1 << 20))
                written += 1 << 20
            os.fsync(f.fileno())
    except OSError as exc:
        error = exc.errno
    finally:
        if os.path.exists(path):
            os.remove(path)
    return {"errno": error, "written": written}
