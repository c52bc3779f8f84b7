"""Version 2 of a deployed snapshot app (snapshot_v1 and snapshot_v2 deploy under one name)."""

from __future__ import annotations

import os
from pathlib import Path

import skylift as modal

app = modal.App("e2e-snapshot-redeploy")


@app.cls(enable_memory_snapshot=True)
class Versioned:
    workdir: str = modal.parameter()

    @modal.enter(snap=True)
    def load(self) -> None:
        Path(self.workdir, f"snap-{os.getpid()}").write_text("2")

    @modal.method()
    def version(self) -> dict[str, int]:
        return {"version": 2, "template_pid": os.getppid(), "pid": os.getpid()}
