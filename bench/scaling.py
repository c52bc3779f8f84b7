"""How many containers the autoscaler starts for a map, and what the map costs, before vs after.

    .venv/bin/python bench/scaling.py [--before /tmp/before/src] [--runtime process|container|both]

Each measurement runs in a child process with its own SKYLIFT_HOME (a temp dir) and platform,
once per source tree: `--before SRC` (e.g. a worktree of the base commit) and this tree, in the
same run, so the two columns are comparable on a noisy machine. Functions have default settings
(bench/scaling_app.py): no `max_containers` to hide an overshoot.

Per run: a 200-input map of a trivial function (containers started, wall time, cold);
a 200-input map on a class with a 1 s @enter (the same), then the cold start of an unrelated
function right after it (what the extra containers' @enter hooks slow down); a 10k-input map of a
trivial function, cold then again warm (inputs/s; containers over both).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class ContainerCounter:
    """Every container the app ever had, by function (polled: idle ones may be evicted before the end)."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.seen: dict[str, str] = {}  # task id -> function tag
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        from skylift._client import Client, run_sync

        client = Client.from_env()
        while not self._stop.is_set():
            for task in run_sync(client.call("task.list", {"app_id": self.app_id}))["tasks"]:
                self.seen[task["task_id"]] = task["function_tag"]
            self._stop.wait(0.03)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        counts: dict[str, int] = {}
        for tag in self.seen.values():
            counts[tag] = counts.get(tag, 0) + 1
        return counts


def child(n_small: int, n_large: int) -> None:
    sys.path.insert(0, str(HERE))
    from scaling_app import Model, app, endpoint, trivial, trivial_10k

    out: dict[str, Any] = {}
    with app.run():
        app_id = app.app_id
        assert app_id is not None
        counter = ContainerCounter(app_id)
        t = time.perf_counter()
        assert len(list(trivial.map(range(n_small)))) == n_small
        out["trivial_wall_s"] = time.perf_counter() - t

        t = time.perf_counter()
        assert len(list(Model().predict.map(range(n_small)))) == n_small
        out["enter_wall_s"] = time.perf_counter() - t
        t = time.perf_counter()
        endpoint.remote()
        out["endpoint_cold_s"] = time.perf_counter() - t

        t = time.perf_counter()
        assert sum(1 for _ in trivial_10k.map(range(n_large))) == n_large
        out["large_rate"] = n_large / (time.perf_counter() - t)
        t = time.perf_counter()
        assert sum(1 for _ in trivial_10k.map(range(n_large))) == n_large
        out["large_warm_rate"] = n_large / (time.perf_counter() - t)
        time.sleep(0.5)  # containers started at the very end still show up
        counts = counter.stop()
        out["trivial_containers"] = counts.get("trivial", 0)
        out["enter_containers"] = sum(n for tag, n in counts.items() if tag.startswith("Model"))
        out["large_containers"] = counts.get("trivial_10k", 0)
    print("RESULT " + json.dumps(out), flush=True)


def measure(src: Path, runtime: str, n_small: int, n_large: int) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="skylift-bench-scaling-")
    env = dict(os.environ, SKYLIFT_HOME=home, PYTHONPATH=str(src))
    env.pop("SKYLIFT_RUNTIME", None)
    if runtime == "process":
        env["SKYLIFT_RUNTIME"] = "process"
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", str(n_small), str(n_large)], env=env,
                              capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run([sys.executable, "-c", "from skylift.cli.main import main; main()", "server", "stop"],
                       env=env, capture_output=True, timeout=120)
        if home not in Path("/proc/mounts").read_text():  # never delete through a leftover mount
            shutil.rmtree(home, ignore_errors=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT "):])
            return result
    raise SystemExit(f"the {runtime} run of {src} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


ROWS = [
    ("containers, 200-input trivial map", "trivial_containers", "{:.0f}"),
    ("wall s, 200-input trivial map (cold)", "trivial_wall_s", "{:.2f}"),
    ("containers, 200-input map, 1 s @enter", "enter_containers", "{:.0f}"),
    ("wall s, 200-input map, 1 s @enter", "enter_wall_s", "{:.2f}"),
    ("cold start s of another fn right after", "endpoint_cold_s", "{:.2f}"),
    ("containers, 10k-input trivial maps", "large_containers", "{:.0f}"),
    ("inputs/s, 10k-input trivial map (cold)", "large_rate", "{:,.0f}"),
    ("inputs/s, the same map again (warm)", "large_warm_rate", "{:,.0f}"),
]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, help="the src/ of the tree to compare with (e.g. a worktree)")
    parser.add_argument("--runtime", choices=["process", "container", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tree (alternating); medians are shown")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=10_000)
    opts = parser.parse_args()
    trees = ([("before", opts.before)] if opts.before else []) + [("after", ROOT / "src")]
    runtimes = ["process", "container"] if opts.runtime == "both" else [opts.runtime]
    for runtime in runtimes:
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
        for i in range(opts.repeat):
            for label, src in trees:
                result = measure(src, runtime, opts.small, opts.large)
                print(f"  [{runtime} runtime, {label}, run {i + 1}] {json.dumps(result)}", flush=True)
                runs[label].append(result)
        print(f"\n{runtime} runtime (median of {opts.repeat}):")
        print(f"  {'':42}" + "".join(f"{label:>12}" for label, _ in trees)
              + ("       after/before" if len(trees) == 2 else ""))
        for name, key, fmt in ROWS:
            values = [sorted(r[key] for r in runs[label])[len(runs[label]) // 2] for label, _ in trees]
            ratio = f"{values[1] / values[0]:>18.2f}x" if len(values) == 2 and values[0] else ""
            print(f"  {name:42}" + "".join(f"{fmt.format(v):>12}" for v in values) + ratio)
        print(flush=True)


if __name__ == "__main__":
    main()
