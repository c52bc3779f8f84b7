"""Version 1 of a deployed app whose containers can't import it (fixable_v2 fixes it, same name)."""

from __future__ import annotations

import skylift as modal

app = modal.App("e2e-fixable")

if not modal.is_local():
    raise RuntimeError("version 1 refuses to import in a container")


@app.function()
def work(x: int) -> str:
    return f"v1:{x}"
