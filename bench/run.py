"""skylift's benchmark: each figure beside ProcessPoolExecutor doing the same work in the same run.

    .venv/bin/python bench/run.py [--quick]

Prints a table and writes bench/results/latest.json. Uses its own SKYLIFT_HOME (a temp dir)
unless SKYLIFT_HOME is set, so caches are warm only within a run. To compare two checkouts on a
shared machine, interleave them instead: `bench/ab.py BEFORE_TREE AFTER_TREE` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke run)")
    parser.add_argument("--map-sizes", default="", help="comma-separated .map sizes (default 10000,100000)")
    opts = parser.parse_args()
    own_home = "SKYLIFT_HOME" not in os.environ
    os.environ.setdefault("SKYLIFT_HOME", tempfile.mkdtemp(prefix="skylift-bench-"))
    try:
        run(opts)
    finally:
        if own_home:
            subprocess.run([str(ROOT / ".venv/bin/skylift"), "server", "stop"], capture_output=True)


def run(opts: argparse.Namespace) -> None:
    import baselines
    from bench_app import app, noop, noop_capped, sleep10, sleep10_concurrent, trivial

    import skylift as modal

    n_remote = 300 if opts.quick else 2000
    map_sizes = [2000] if opts.quick else [10_000, 100_000]
    if opts.map_sizes:
        map_sizes = [int(n) for n in opts.map_sizes.split(",")]
    n_sleep = 200 if opts.quick else 1000
    rows: list[tuple[str, str, str, str]] = []
    results: dict[str, float] = {}

    def row(what: str, ours: float, base: float, unit: str, lower_is_better: bool) -> None:
        ratio = ours / base if base else float("nan")
        rows.append((what, f"{ours:,.3f} {unit}", f"{base:,.3f} {unit}",
                     f"{ratio:.2f}x {'(lower is better)' if lower_is_better else '(higher is better)'}"))
        results[what] = ours
        results[what + " [baseline]"] = base
        print(f"  {what}: skylift {ours:,.3f} {unit} | PPE {base:,.3f} {unit} | ratio {ratio:.2f}", flush=True)

    t0 = time.perf_counter()
    with app.run():
        print(f"app ready in {time.perf_counter() - t0:.2f}s (platform start + image + objects)", flush=True)
        # Cold start: the first call starts a container (the image is cached by now).
        t = time.perf_counter()
        trivial.remote()
        cold = time.perf_counter() - t
        base_cold = baselines.ppe_cold_start()
        row("cold start to first result (trivial fn)", cold * 1000, base_cold * 1000, "ms", True)

        noop.remote()
        lat = []
        for i in range(n_remote):
            t = time.perf_counter()
            noop.remote(i)
            lat.append(time.perf_counter() - t)
        base_lat = baselines.ppe_remote_latencies(n_remote)
        row("warm .remote() p50", statistics.median(lat) * 1000, statistics.median(base_lat) * 1000, "ms", True)
        row("warm .remote() p99", pct(lat, 0.99) * 1000, pct(base_lat, 0.99) * 1000, "ms", True)

        for size in map_sizes:
            base_map = baselines.ppe_map_rate(size, 1)
            for fn, label in ((noop, "default settings"), (noop_capped, "max_containers=2")):
                list(fn.map(range(100)))
                t = time.perf_counter()
                count = sum(1 for _ in fn.map(range(size)))
                rate = count / (time.perf_counter() - t)
                row(f".map over {size:,} no-op inputs, {label} (vs PPE chunksize 1)", rate, base_map, "calls/s", False)
            results[f"map {size} vs PPE chunksize 256"] = baselines.ppe_map_rate(size, 256)

        t = time.perf_counter()
        list(sleep10.map(range(n_sleep)))
        rate = n_sleep / (time.perf_counter() - t)
        base_sleep = baselines.ppe_sleep_rate(n_sleep)
        row(f"{n_sleep} x sleep(10ms), default autoscaling (PPE 2 procs)", rate, base_sleep, "calls/s", False)
        t = time.perf_counter()
        list(sleep10_concurrent.map(range(n_sleep)))
        rate = n_sleep / (time.perf_counter() - t)
        row(f"{n_sleep} x sleep(10ms), @concurrent(100) (PPE 2 procs)", rate, base_sleep, "calls/s", False)

    # `skylift run` of hello world, wall time, with the platform and image already warm.
    env = dict(os.environ)
    cmd = [str(ROOT / ".venv/bin/skylift"), "run", "-q", str(ROOT / "examples/hello_world.py")]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
    t = time.perf_counter()
    one_call = "import concurrent.futures as f; f.ProcessPoolExecutor(1).submit(int).result()"
    subprocess.run([sys.executable, "-c", one_call],
                   check=True)
    base_run = time.perf_counter() - t
    row("`skylift run hello_world.py` wall (vs python+PPE one call)", statistics.median(walls), base_run, "s", True)

    modal_version = modal.__version__
    print()
    print(f"skylift {modal_version}, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    width = max(len(r[0]) for r in rows)
    print(f"{'what'.ljust(width)}  {'skylift':>22}  {'ProcessPoolExecutor':>22}  ratio")
    for what, ours, base, ratio in rows:
        print(f"{what.ljust(width)}  {ours:>22}  {base:>22}  {ratio}")
    out = HERE / "results" / "latest.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
