"""Interleaved A/B of two skylift checkouts: warm `.remote()` latency and `.map` rate.

    .venv/bin/python bench/ab.py /tmp/before-tree /work/after-tree [--rounds 12] [--calls 150]
                                 [--map 0] [--map-rounds 3]

Each tree runs its own platform (own SKYLIFT_HOME, its own `src/` first on PYTHONPATH, so
client, control plane and containers are all that tree's) in a child process that keeps
`bench_app` running. The driver asks them in turn (who goes first alternates) for a round of
`.remote()` calls, then measures ProcessPoolExecutor in the same round, so each figure has a
baseline taken within seconds of it. On a shared, loaded machine this is the comparison to
trust; single `bench/run.py` runs move by ±20 % from run to run.
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


def child() -> None:
    sys.path.insert(0, str(HERE))
    from bench_app import app, noop, noop_capped

    fns = {"noop": noop, "noop_capped": noop_capped}
    with app.run():
        noop.remote()
        for i in range(50):
            noop.remote(i)
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            cmd, n, *rest = line.split()
            if cmd == "remote":
                lat = []
                for i in range(int(n)):
                    t = time.perf_counter()
                    noop.remote(i)
                    lat.append(time.perf_counter() - t)
                print(json.dumps({"lat": lat}), flush=True)
            elif cmd == "map":
                fn = fns[rest[0] if rest else "noop"]
                list(fn.map(range(100)))
                t = time.perf_counter()
                count = sum(1 for _ in fn.map(range(int(n))))
                print(json.dumps({"rate": count / (time.perf_counter() - t)}), flush=True)
            else:
                break


class Side:
    def __init__(self, name: str, tree: Path) -> None:
        self.name = name
        self.home = tempfile.mkdtemp(prefix=f"skylift-ab-{name}-")
        self.env = dict(os.environ, SKYLIFT_HOME=self.home, PYTHONPATH=str(tree / "src"))
        self.tree = tree
        self.proc = subprocess.Popen([str(tree / ".venv/bin/python"), str(tree / "bench/ab.py"), "--child"],
                                     cwd=str(tree), env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def ask(self, line: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        if not out:
            raise SystemExit(f"{self.name}: child exited")
        return json.loads(out)

    def stop(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit 0\n")
            self.proc.stdin.flush()
            self.proc.wait(60)
        except Exception:
            self.proc.kill()
        subprocess.run([str(self.tree / ".venv/bin/skylift"), "server", "stop"], env=self.env, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("a", nargs="?")
    parser.add_argument("b", nargs="?")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--map", type=int, default=0, help="also time .map of this many inputs")
    parser.add_argument("--map-fn", default="noop")
    parser.add_argument("--map-rounds", type=int, default=3)
    opts = parser.parse_args()
    if opts.child:
        child()
        return
    sys.path.insert(0, str(HERE))
    import baselines

    sides = [Side("A", Path(opts.a).resolve()), Side("B", Path(opts.b).resolve())]
    try:
        for side in sides:
            side.ask("")
        p50: dict[str, list[float]] = {"A": [], "B": [], "PPE": []}
        for r in range(opts.rounds):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                p50[side.name].append(statistics.median(side.ask(f"remote {opts.calls}")["lat"]) * 1000)
            p50["PPE"].append(statistics.median(baselines.ppe_remote_latencies(opts.calls)) * 1000)
        med = {k: statistics.median(v) for k, v in p50.items()}
        print(f"warm .remote() p50 over {opts.rounds} rounds x {opts.calls} calls (median of round medians):")
        for k in ("A", "B"):
            print(f"  {k}: {med[k]:.3f} ms = {med[k] / med['PPE']:.2f}x PPE ({med['PPE']:.3f} ms)  "
                  f"rounds {' '.join(f'{x:.2f}' for x in p50[k])}")
        print(f"  B/A: {med['B'] / med['A']:.2f}x")
        if opts.map:
            rates: dict[str, list[float]] = {"A": [], "B": [], "PPE": []}
            for r in range(opts.map_rounds):
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    rates[side.name].append(side.ask(f"map {opts.map} {opts.map_fn}")["rate"])
                rates["PPE"].append(baselines.ppe_map_rate(opts.map, 1))
            print(f".map of {opts.map} ({opts.map_fn}), {opts.map_rounds} rounds:")
            for k in ("A", "B"):
                ratios = [x / p for x, p in zip(rates[k], rates["PPE"], strict=True)]
                print(f"  {k}: {' '.join(f'{x:,.0f}/s' for x in rates[k])}; x PPE "
                      f"{' '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f})")
            print(f"  PPE chunksize 1: {' '.join(f'{x:,.0f}/s' for x in rates['PPE'])}")
    finally:
        for side in sides:
            side.stop()


if __name__ == "__main__":
    main()
