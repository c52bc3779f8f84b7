"""An app whose containers crash on import (the module raises when imported remotely)."""

import skylift as modal

app = modal.App("e2e-broken")

if not modal.is_local():
    raise RuntimeError("this module refuses to import in a container")


@app.function()
def never() -> int:
    return 1
