"""Trivial functions bench/cold_start.py starts from cold: nothing to import but skylift itself."""

import skylift as modal

app = modal.App("skylift-bench-cold-start-trivial")


@app.function(enable_memory_snapshot=True)
def trivial_snap():
    return 1


@app.function()
def trivial_plain():
    return 1
