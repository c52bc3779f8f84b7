"""What bench/containers.py runs: a trivial function on a 3-layer image, and an image with one pip layer."""

import skylift as modal

image = (modal.Image.debian_slim(python_version="3.11")
         .env({"BENCH": "1"})
         .run_commands("echo bench > /bench.txt"))
pip_image = modal.Image.debian_slim(python_version="3.11").pip_install("six")

app = modal.App("skylift-bench-containers", image=image)


@app.function()
def trivial():
    return 1
