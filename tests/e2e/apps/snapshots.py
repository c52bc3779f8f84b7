"""Memory snapshots and warm pools; imported by the tests and, in containers, by skylift.

Hooks leave marker files in `workdir` (a parameter, so each test has its own pool and template):
`snap-<pid>` for every run of an @enter(snap=True) hook, `enter-<pid>` for every @enter(snap=False).
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import skylift as modal

app = modal.App("e2e-snapshots")

IMPORTED_BY = os.getpid()  # the process that ran this module's global code


def _mark(workdir: str, kind: str) -> None:
    Path(workdir, f"{kind}-{os.getpid()}").write_text(str(time.time()))


@app.cls(enable_memory_snapshot=True, max_containers=4)
class Snapper:
    workdir: str = modal.parameter()

    @modal.enter(snap=True)
    def load(self) -> None:
        _mark(self.workdir, "snap")
        self.loaded_by = os.getpid()
        self.weights = [1, 2, 3]
        self.counter = 0

    @modal.enter(snap=False)
    def setup(self) -> None:
        _mark(self.workdir, "enter")
        self.setup_by = os.getpid()

    @modal.method()
    def info(self, hold: float = 0.0) -> dict[str, object]:
        self.counter += 1
        time.sleep(hold)
        return {"pid": os.getpid(), "ppid": os.getppid(), "loaded_by": self.loaded_by, "setup_by": self.setup_by,
                "imported_by": IMPORTED_BY, "weights": self.weights, "counter": self.counter,
                "random": random.random(), "task_id": os.environ.get("SKYLIFT_TASK_ID"),
                "sid": os.getsid(0), "threads": threading.active_count()}


@app.cls(enable_memory_snapshot=True)
class Threaded:
    """Starts a thread before the snapshot: the template refuses, containers start from scratch."""

    workdir: str = modal.parameter()

    @modal.enter(snap=True)
    def load(self) -> None:
        _mark(self.workdir, "snap")
        self.worker = threading.Thread(target=time.sleep, args=(30,), daemon=True, name="snap-thread")
        self.worker.start()

    @modal.method()
    def pid(self) -> int:
        return os.getpid()


@app.cls(enable_memory_snapshot=True)
class BrokenSnap:
    @modal.enter(snap=True)
    def load(self) -> None:
        raise RuntimeError("the weights are missing")

    @modal.method()
    def run(self) -> int:
        return 1


@app.function(enable_memory_snapshot=True)
def snap_function(x: int) -> dict[str, int]:
    return {"x": x, "pid": os.getpid(), "imported_by": IMPORTED_BY}


snap_vol = modal.Volume.from_name("e2e-snapshot-vol", create_if_missing=True)


@app.function(enable_memory_snapshot=True, volumes={"/snapvol": snap_vol})
def write_to_volume(name: str, text: str) -> dict[str, object]:
    Path("/snapvol", name).write_text(text)
    snap_vol.commit()
    return {"pid": os.getpid(), "imported_by": IMPORTED_BY, "listing": sorted(os.listdir("/snapvol"))}


@app.function(enable_memory_snapshot=True, timeout=1)
def sleeps(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@app.function(min_containers=2, scaledown_window=2)
def warm(x: int) -> int:
    return x


@app.cls(min_containers=1)
class WarmCls:
    size: int = modal.parameter(default=1)

    @modal.method()
    def where(self) -> dict[str, object]:
        return {"task_id": os.environ.get("SKYLIFT_TASK_ID"), "size": self.size}
