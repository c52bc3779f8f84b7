"""Sandboxes as a user drives them, against the same work in a local subprocess (the baseline).

    python bench/sandboxes.py [--runtime process|container] [--n 20]

Prints: create → first echo back through stdin/stdout, an `exec("true")` round trip (median),
and stdout throughput of one exec (64 MiB), each beside `subprocess` doing the same on this host.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="process", choices=["process", "container"])
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    os.environ["SKYLIFT_RUNTIME"] = args.runtime
    import skylift as modal
    from skylift.testing import local_platform

    with tempfile.TemporaryDirectory(prefix="skylift-bench-sbx-") as home, local_platform(home):
        app = modal.App.lookup("bench-sandboxes", create_if_missing=True)
        modal.Sandbox.create("true", app=app).wait()  # the image is built once, outside the figures

        t0 = time.perf_counter()
        sb = modal.Sandbox.create("cat", app=app)
        created = time.perf_counter() - t0
        sb.stdin.write(b"ping\n")
        sb.stdin.drain()
        first = next(iter(sb.stdout))
        echoed = time.perf_counter() - t0
        assert first == "ping\n", first
        sb.terminate()

        idle = modal.Sandbox.create(app=app)
        rounds = []
        for _ in range(args.n):
            t = time.perf_counter()
            idle.exec("true").wait()
            rounds.append(time.perf_counter() - t)
        local = []
        for _ in range(args.n):
            t = time.perf_counter()
            subprocess.run(["true"], check=True)
            local.append(time.perf_counter() - t)

        size = 64 * 1024 * 1024
        t = time.perf_counter()
        p = idle.exec("head", "-c", str(size), "/dev/zero", text=False)
        got = len(p.stdout.read())
        p.wait()
        remote_s = time.perf_counter() - t
        assert got == size, got
        t = time.perf_counter()
        local_got = len(subprocess.run(["head", "-c", str(size), "/dev/zero"], capture_output=True).stdout)
        local_s = time.perf_counter() - t
        assert local_got == size
        idle.terminate()

    exec_ms, local_ms = statistics.median(rounds) * 1000, statistics.median(local) * 1000
    print(f"runtime {args.runtime}")
    print(f"create returned           {created * 1000:8.1f} ms")
    print(f"create → first echo       {echoed * 1000:8.1f} ms")
    print(f"exec('true') + wait       {exec_ms:8.1f} ms   local subprocess {local_ms:6.2f} ms   "
          f"×{exec_ms / local_ms:.0f}")
    remote_rate, local_rate = size / remote_s / 2**20, size / local_s / 2**20
    print(f"64 MiB of stdout          {remote_rate:8.1f} MiB/s   local {local_rate:8.1f} MiB/s   "
          f"×{remote_s / local_s:.1f} the time")


if __name__ == "__main__":
    main()
