"""Version 2 of fixable_v1's app: the fixed deploy its waiting spawned calls run on."""

from __future__ import annotations

import skylift as modal

app = modal.App("e2e-fixable")


@app.function()
def work(x: int) -> str:
    return f"v2:{x}"
