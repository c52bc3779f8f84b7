"""A function that undoes its forked container's lock-down at import time, then tries for the host.

The import runs in the snapshot template, before any container is forked from it; replacing
`fork_container._lock_down` leaves every fork with the capabilities the template holds (tests/e2e/
test_container_snapshots.py shows they don't reach the host).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import skylift as modal

if not modal.is_local():  # in the template's interpreter (and any container's)
    from skylift._runtime import fork_container

    fork_container._lock_down = lambda spec: None

app = modal.App("e2e-container-snapshot-escape")
MNT_DETACH = 2


def _write(path: str, text: str) -> str:
    try:
        with open(path, "w") as f:
            f.write(text)
        return "written"
    except OSError as exc:
        return type(exc).__name__


@app.function(enable_memory_snapshot=True)
def try_escape() -> dict[str, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    unmounted = libc.umount2(b"/proc/sys", MNT_DETACH) == 0  # the read-only mask over /proc/sys
    status = {line.split(":")[0]: line.split(":", 1)[1].strip() for line in open("/proc/self/status")}
    current = open("/proc/sys/kernel/core_pattern").read().strip()
    return {"cap_eff": status["CapEff"], "unmounted_proc_sys": unmounted,
            "core_pattern": _write("/proc/sys/kernel/core_pattern", current),
            "sysrq": _write("/proc/sysrq-trigger", "h") if os.path.exists("/proc/sysrq-trigger") else "missing",
            "uid_map": open("/proc/self/uid_map").read().split()}
