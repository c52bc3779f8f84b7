"""Functions bench/cold_start.py starts from cold (imported by it and, in containers, by skylift).

`Heavy*` import numpy at global scope and spend 250 ms more in an enter hook: ~300 ms of work a
memory snapshot does once per template instead of once per container.
"""

import time

import numpy

import skylift as modal

app = modal.App("skylift-bench-cold-start")
image = modal.Image.debian_slim().pip_install("numpy")

LOAD_SECONDS = 0.25


@app.cls(image=image, enable_memory_snapshot=True)
class HeavySnap:
    @modal.enter(snap=True)
    def load(self):
        time.sleep(LOAD_SECONDS)  # e.g. reading weights into memory
        self.table = numpy.arange(1_000_000)

    @modal.method()
    def run(self):
        return int(self.table[-1])


@app.cls(image=image)
class HeavyPlain:
    @modal.enter()
    def load(self):
        time.sleep(LOAD_SECONDS)
        self.table = numpy.arange(1_000_000)

    @modal.method()
    def run(self):
        return int(self.table[-1])
