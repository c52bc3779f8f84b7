"""Functions bench/scaling.py maps over (imported by it and, in containers, by skylift).

All with default autoscaler settings, as users write them: the point is how many containers the
autoscaler starts on its own.
"""

import time

import skylift as modal

app = modal.App("skylift-bench-scaling")

ENTER_SECONDS = 1.0


@app.function()
def trivial(x=None):
    return x


@app.function()
def trivial_10k(x=None):
    return x


@app.function()
def endpoint():
    return 1


@app.cls()
class Model:
    @modal.enter()
    def load(self):
        time.sleep(ENTER_SECONDS)  # e.g. reading weights into memory

    @modal.method()
    def predict(self, x=None):
        return x
