"""Container runtime figures beside the process runtime's, measured in the same run.

    sudo .venv/bin/python bench/containers.py [--rounds 5]

For each runtime (SKYLIFT_RUNTIME=process, then container when this host can run containers) a fresh
platform in its own temp SKYLIFT_HOME, then:

* cold start to first result: a new app run, its first `.remote()` of a trivial function; the image
  is already built (cached), so this is container start + runtime import + connect + the call (a fork
  of the pool's preloaded interpreter where SKYLIFT_PRELOAD allows: `--preload process|all|0`);
* rebuild of an unchanged 3-layer image (debian_slim + env + run_commands): through the SDK
  (`image.build`, the control plane knows it is ready) and in the worker's image store alone
  (hash the definition, find every layer on disk);
* the first `pip_install("six")` layer on top of a cached base (uv; the container runtime's uv cache
  is new with the home, the process runtime uses the host's).

Prints a table and writes bench/results/containers.json. The Debian base itself (debootstrap, ~45 s
once per host) is cached under /var/cache/skylift and not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def measure(runtime: str, rounds: int) -> dict[str, float]:
    os.environ["SKYLIFT_RUNTIME"] = runtime
    from container_app import app, image, pip_image, trivial

    from skylift import _runner
    from skylift._client import Client, run_sync
    from skylift.testing import local_platform

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"skylift-bench-{runtime}-") as home, local_platform(home) as platform:
        with app.run():
            trivial.remote()  # builds the image
        cold = []
        for _ in range(rounds):
            with app.run():
                t = time.perf_counter()
                trivial.remote()
                cold.append(time.perf_counter() - t)
        figures["cold start to first result (cached image)"] = statistics.median(cold) * 1000

        client = Client.from_env()
        run_sync(_runner.build_image(client, image, label="bench"))
        sdk = []
        for _ in range(rounds * 4):
            t = time.perf_counter()
            run_sync(_runner.build_image(client, image, label="bench"))
            sdk.append(time.perf_counter() - t)
        figures["rebuild unchanged 3-layer image, via the SDK"] = statistics.median(sdk) * 1000
        figures["rebuild unchanged 3-layer image, worker store"] = worker_rebuild(runtime, platform.home,
                                                                                 rounds * 4) * 1000

        t = time.perf_counter()
        run_sync(_runner.build_image(client, pip_image, label="bench"))
        figures["first pip_install('six') layer"] = (time.perf_counter() - t) * 1000
    return figures


def worker_rebuild(runtime: str, home: Path, n: int) -> float:
    from container_app import image

    from skylift.worker.blobs import BlobCache, DictBlobSource
    from skylift.worker.images import ImageStore, prepare_runtime_site

    blobs = BlobCache(home / "blobs-cache", DictBlobSource())
    site = prepare_runtime_site(home / "runtime-site")
    if runtime == "container":
        from skylift.worker.container_images import ContainerImageStore

        store: ImageStore = ContainerImageStore(home / "container-images", blobs, runtime_site=site)
    else:
        store = ImageStore(home / "images", blobs, runtime_site=site)
    definition = {"layers": image._build_layers()}

    async def go() -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            await store.build("im-bench", definition, lambda line: None)
            times.append(time.perf_counter() - t)
        return times

    return statistics.median(asyncio.run(go()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--preload", choices=("process", "all", "0"), default=None,
                        help="SKYLIFT_PRELOAD for the platforms' workers (docs/cold-starts.md, preloaded interpreters)")
    opts = parser.parse_args()
    if opts.preload is not None:
        os.environ["SKYLIFT_PRELOAD"] = opts.preload
    from skylift.worker.container import available

    runtimes = ["process"]
    ok, why = available()
    if ok:
        runtimes.append("container")
    else:
        print(f"container runtime unavailable here ({why}); measuring the process runtime only")
    results = {runtime: measure(runtime, opts.rounds) for runtime in runtimes}
    print()
    what = list(results["process"])
    width = max(len(w) for w in what)
    print(f"{'what'.ljust(width)}  " + "  ".join(f"{r:>12}" for r in runtimes))
    for w in what:
        print(f"{w.ljust(width)}  " + "  ".join(f"{results[r][w]:>9.1f} ms" for r in runtimes))
    out = HERE / "results" / "containers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
