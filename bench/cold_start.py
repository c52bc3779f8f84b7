"""Cold start to first result, with and without memory snapshots (docs/cold-starts.md).

    .venv/bin/python bench/cold_start.py [--samples N] [--runtime process|container] [--preload process|all|0]

Every sample is a true cold start: the pool's containers are stopped (`task.stop`) and gone
before the call, so `.remote()` waits for a new container. Measured for

* a function whose global imports + enter hook take ~300 ms (`import numpy` + a 250 ms
  `@enter(snap=True)`; the plain variant runs the same in `@enter()`), and
* a trivial function (nothing to import but skylift),

each with `enable_memory_snapshot=True` (forked from a template) and without (by default a fork of the
pool's preloaded interpreter after its first container, on either runtime; `--preload process` keeps the
container runtime's containers new bubblewrap sandboxes, `--preload 0` measures new processes only). On the
container runtime a fork is usually of a pre-forked spare (docs/cold-starts.md): the bench's true cold starts
come after the previous container has gone, when the spare made after its fork is ready.
The first snapshot call also starts the template; it is reported on its own. Prints a table and
the per-phase profile the control plane recorded, and writes bench/results/cold_start.json.
Runs the process runtime unless `--runtime container` (root; each forked container then gets its own
namespaces, root filesystem and cgroups); uses its own SKYLIFT_HOME unless one is set.
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
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=10, help="cold starts per variant")
    parser.add_argument("--runtime", choices=("process", "container"), default="process")
    parser.add_argument("--preload", choices=("process", "all", "0"), default=None,
                        help="SKYLIFT_PRELOAD for the platform's worker (docs/cold-starts.md, preloaded interpreters)")
    opts = parser.parse_args()
    if opts.preload is not None:
        os.environ["SKYLIFT_PRELOAD"] = opts.preload
    own_home = "SKYLIFT_HOME" not in os.environ
    os.environ.setdefault("SKYLIFT_HOME", tempfile.mkdtemp(prefix="skylift-bench-cold-"))
    os.environ["SKYLIFT_RUNTIME"] = opts.runtime
    try:
        run(opts.samples, opts.runtime)
    finally:
        if own_home:
            subprocess.run([str(ROOT / ".venv/bin/skylift"), "server", "stop"], capture_output=True)


def call(method: str, params: dict[str, Any]) -> Any:
    from skylift._client import Client, run_sync

    return run_sync(Client.from_env().call(method, params))


def containers(tag: str) -> list[dict[str, Any]]:
    return [t for t in call("task.list", {"environment": "main"})["tasks"] if t["function_tag"] == tag]


def stop_pool(tag: str) -> None:
    ids = {t["task_id"] for t in containers(tag)}
    for task_id in ids:
        call("task.stop", {"task_id": task_id})
    while ids & {t["task_id"] for t in containers(tag)}:
        time.sleep(0.005)


def cold_starts(tag: str, fn: Any, samples: int) -> tuple[list[float], list[dict[str, Any]]]:
    """`samples` true cold starts of `fn`: client-side seconds and the control plane's profiles."""
    walls, profiles = [], []
    for _ in range(samples):
        stop_pool(tag)
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        [task] = containers(tag)
        profiles.append(call("task.get", {"task_id": task["task_id"]})["task"]["profile"])
    stop_pool(tag)
    return walls, profiles


def phase_medians(profiles: list[dict[str, Any]]) -> str:
    by_label: dict[str, list[float]] = {}
    for profile in profiles:
        for label, ms in profile["phases"]:
            by_label.setdefault(label, []).append(ms)
    return ", ".join(f"{label} {statistics.median(v):.1f}" for label, v in by_label.items())


def run(samples: int, runtime: str) -> None:
    import cold_start_app as heavy
    import cold_start_trivial as trivial

    results: dict[str, Any] = {"samples": samples, "runtime": runtime}
    rows: list[tuple[str, float, float, float]] = []
    t = time.perf_counter()
    with heavy.app.run(), trivial.app.run():
        print(f"apps ready in {time.perf_counter() - t:.1f}s (platform start + numpy image build)", flush=True)
        variants = [
            ("numpy + 250 ms enter, snapshot", "HeavySnap", lambda: heavy.HeavySnap().run.remote()),
            ("numpy + 250 ms enter, no snapshot", "HeavyPlain", lambda: heavy.HeavyPlain().run.remote()),
            ("trivial, snapshot", "trivial_snap", trivial.trivial_snap.remote),
            ("trivial, no snapshot", "trivial_plain", trivial.trivial_plain.remote),
        ]
        for name, tag, fn in variants:
            fn()  # the image is built, and for snapshots the template taken: the first container
            first = containers(tag)
            first_profile = call("task.get", {"task_id": first[0]["task_id"]})["task"]["profile"] if first else {}
            walls, profiles = cold_starts(tag, fn, samples)
            median = statistics.median(walls) * 1000
            p90 = sorted(walls)[min(len(walls) - 1, int(0.9 * len(walls)))] * 1000
            server = statistics.median(p["total_ms"] for p in profiles)
            rows.append((name, median, p90, server))
            results[name] = {"median_ms": median, "p90_ms": p90, "server_total_ms": server,
                             "phases_ms": phase_medians(profiles), "first_container": first_profile}
            print(f"  {name}: median {median:.1f} ms, p90 {p90:.1f} ms (server: {server:.1f} ms to first input)",
                  flush=True)
            print(f"    phases (median ms): {phase_medians(profiles)}", flush=True)
            if first_profile.get("how") == "fork":
                template = dict(first_profile["phases"]).get("snapshot template")
                print(f"    first container (starts the template): {first_profile['total_ms']:.0f} ms, "
                      f"template {template or 0:.0f} ms", flush=True)

    speedups = {"numpy + 250 ms enter": rows[1][1] / rows[0][1], "trivial": rows[3][1] / rows[2][1]}
    results["speedup"] = speedups
    print()
    print(f"skylift cold starts, {runtime} runtime (SKYLIFT_PRELOAD={os.environ.get('SKYLIFT_PRELOAD', 'all')}), "
          f"{samples} samples each, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    width = max(len(r[0]) for r in rows)
    print(f"{'what'.ljust(width)}  {'median':>10}  {'p90':>10}  {'server':>10}")
    for name, median, p90, server in rows:
        print(f"{name.ljust(width)}  {median:>7.1f} ms  {p90:>7.1f} ms  {server:>7.1f} ms")
    for what, ratio in speedups.items():
        print(f"snapshot speed-up, {what}: {ratio:.1f}x")
    out = HERE / "results" / ("cold_start.json" if runtime == "process" else f"cold_start-{runtime}.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
