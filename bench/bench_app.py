"""Functions the benchmark calls (imported by bench/run.py and, in containers, by skylift)."""

import time

import skylift as modal

app = modal.App("skylift-bench")


@app.function()
def noop(x=None):
    return x


@app.function(max_containers=2)
def noop_capped(x=None):
    """The same no-op with the pool capped at two containers: the map's throughput without the
    autoscaler's choices (compare with `noop`, default settings as users write them)."""
    return x


@app.function()
def sleep10(x=None):
    time.sleep(0.01)
    return x


@app.function(max_containers=1)
@modal.concurrent(max_inputs=100)
def sleep10_concurrent(x=None):
    time.sleep(0.01)
    return x


@app.function()
def trivial():
    return 1
