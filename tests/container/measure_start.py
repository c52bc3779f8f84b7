"""Measure what a container start costs here (run as root: `python tests/container/measure_start.py`).

Prints medians in milliseconds. Starts are spaced out (as in real use) unless --burst; figures from a
noisy shared machine vary by ±30 %, compare ratios. Not a test: speed is measured, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from skylift._libc import mount as raw_mount
from skylift.worker.container import Sandbox, SandboxSpec, build_debian_base, host, network, run_build_step
from skylift.worker.container.bwrap import BwrapOptions, build_args
from skylift.worker.container.cgroups import Cgroup, CgroupLimits
from skylift.worker.container.overlay import mount_overlay, unmount


def ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.2f} ms  (min {min(samples) * 1000:.2f})"


def timed(fn: Callable[[], object], n: int, pause: float = 0.0) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
        time.sleep(pause)
    return samples


async def sandbox_run(base: list[Path], scratch: Path, command: list[str], **options: object) -> tuple[float, float]:
    start = time.perf_counter()
    sandbox = await Sandbox.start(SandboxSpec(layers=base, command=command, task_id="ta-bench",
                                              state_dir=scratch, **options))  # type: ignore[arg-type]
    started = time.perf_counter()
    await asyncio.gather(sandbox.stdout.read(), sandbox.stderr.read())
    await sandbox.process.wait()
    exited = time.perf_counter()
    await sandbox.wait()
    return started - start, exited - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", default=os.environ.get("SKYLIFT_TEST_IMAGE_CACHE") or "/var/cache/skylift-test")
    parser.add_argument("-n", type=int, default=15)
    parser.add_argument("--burst", action="store_true", help="start containers back to back")
    args = parser.parse_args()
    ok, why = host.available()
    if not ok:
        sys.exit(f"containers unavailable: {why}")
    t = time.perf_counter()
    base = build_debian_base(Path(args.cache), "3.11", lambda line: None)
    print(f"debian base (cached: {time.perf_counter() - t:.3f} s; first build recorded in its metadata)")
    print(f"  {(base / '.skylift-base.json').read_text().strip()}")
    pause = 0.0 if args.burst else 0.2
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        layers = []
        for i in range(4):
            layer = tmp / f"layer{i}"
            run_build_step([base, *layers], layer, ["sh", "-c", f"echo {i} > /layer{i}"], {}, "/", lambda _: None,
                           network=False)
            layers.append(layer)
        for depth in (1, 5):
            stack = [base, *layers][:depth]
            lower = ":".join(str(p) for p in reversed(stack))

            samples: list[float] = []

            def mount_once(lower: str = lower, samples: list[float] = samples) -> None:
                target = tmp / "m"
                for d in ("u", "w", "m"):
                    (tmp / d).mkdir(exist_ok=True)
                start = time.perf_counter()
                raw_mount("overlay", str(target), "overlay", 0,
                          f"lowerdir={lower},upperdir={tmp / 'u'},workdir={tmp / 'w'},index=off")
                samples.append(time.perf_counter() - start)
                unmount(target)

            timed(mount_once, args.n)
            print(f"overlay mount syscall, {depth} layer(s):   {ms(samples)}")
        def overlay_cycle() -> None:
            mount_overlay([base], tmp / "u2", tmp / "w2", tmp / "r2")
            unmount(tmp / "r2")

        print(f"mount_overlay + unmount:            {ms(timed(overlay_cycle, args.n))}")

        def cgroup_cycle() -> None:
            c = Cgroup("bench")
            c.create(CgroupLimits(1.0, 512, 4096))
            c.remove()

        print(f"cgroup create + limits + remove:    {ms(timed(cgroup_cycle, args.n))}")
        pool = network.NetnsPool(size=0)
        created: list[network.Netns] = []
        print(f"netns + veth + addresses (pooled):  {ms(timed(lambda: created.append(pool._create()), args.n))}")
        print(f"netns delete:                       {ms(timed(lambda: pool.release(created.pop()), args.n))}")

        rootfs = tmp / "r3"
        mount_overlay([base], tmp / "u3", tmp / "w3", rootfs)
        bwrap = host.readonly_bwrap()
        for cmd in (["/bin/true"], ["python3", "-c", "pass"]):
            argv = build_args(bwrap, BwrapOptions(rootfs=rootfs, command=cmd, unshare_net=True))
            samples = timed(lambda a=argv: subprocess.run(a), args.n, pause)
            print(f"bare bwrap (our mounts) {cmd[0]:>8}:   {ms(samples)}")
        unmount(rootfs)

        async def sandboxes() -> None:
            await sandbox_run([base], tmp / "warm", ["/bin/true"])
            for cmd in (["/bin/true"], ["python3", "-c", "pass"]):
                for block in (False, True):
                    starts, exits = [], []
                    for _ in range(args.n):
                        s, e = await sandbox_run([base], tmp / "s", cmd, block_network=block,
                                                 memory_mb=512, cpu=1.0)
                        starts.append(s)
                        exits.append(e)
                        await asyncio.sleep(pause)
                    label = f"{' '.join(cmd)} ({'block_network' if block else 'NAT network'})"
                    print(f"Sandbox {label:<34} start() returns {ms(starts)};  start -> exit {ms(exits)}")
            starts, exits = [], []
            for _ in range(args.n):  # the writable layer and /tmp on a 10 GiB ephemeral disk (disk.py)
                s, e = await sandbox_run([base], tmp / "d", ["/bin/true"], block_network=True, memory_mb=512,
                                         cpu=1.0, disk_mb=10240)
                starts.append(s)
                exits.append(e)
                await asyncio.sleep(pause)
            print(f"Sandbox {'/bin/true (block_network, 10 GiB disk)':<34} start() returns {ms(starts)};  "
                  f"start -> exit {ms(exits)}")
            sandbox = await Sandbox.start(SandboxSpec(layers=[base], command=["sleep", "60"], task_id="ta-exec",
                                                      state_dir=tmp / "e"))
            samples = []
            for _ in range(args.n):
                start = time.perf_counter()
                process = await sandbox.exec(["/bin/true"])
                await process.wait()
                samples.append(time.perf_counter() - start)
            await sandbox.close()
            print(f"Sandbox.exec /bin/true:             {ms(samples)}")

        asyncio.run(sandboxes())


if __name__ == "__main__":
    main()
