"""Web endpoints: wrk through skylift's gateway vs the same ASGI app on bare uvicorn, in one run.

    .venv/bin/python bench/web.py [--duration 5] [--connections 32] [--only raw|fastapi] [--profile DIR]

Needs `wrk` (Debian package, installed by scripts/setup when run as root). Each app runs in one
container with @modal.concurrent (one process, like one uvicorn worker); both sides use the
asyncio event loop. Prints requests/s and latency for each and the gateway/bare ratio; writes
bench/results/web.json.

It also prints the CPU time each request costs (user + system, from /proc): the control plane,
the container and wrk through the gateway; uvicorn and wrk on the bare side. On a machine whose
cores are all busy, requests/s follow the CPU a request costs, so the ratio of those totals
("CPU ratio") is the same comparison with less noise from what else the machine runs.

`--profile DIR` records py-spy profiles (collapsed stacks, sampled only while the process holds
the GIL: its Python work, not its waits or system calls) of the control plane and the container
during the gateway's runs (py-spy: `.venv/bin/pip install py-spy`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ok(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} never answered 200")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def containers(server_pid: int) -> list[int]:
    found = []
    for pid in descendants(server_pid):
        try:
            if b"skylift._runtime" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def wrk(url: str, duration: float, connections: int, pids: dict[str, list[int]] | None = None) -> dict[str, float]:
    """wrk's figures, and with `pids` the CPU microseconds per request of each named group of
    processes (for each group, its busiest process: the container that answered) and of wrk."""
    before = {pid: cpu_seconds(pid) for group in (pids or {}).values() for pid in group}
    started = os.times()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    ended = os.times()
    used = {pid: cpu_seconds(pid) - before[pid] for pid in before}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def latency(label: str) -> float:
        found = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not found:
            return float("nan")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    result = {"rps": rps, "p50_ms": latency("50%"), "p99_ms": latency("99%"),
              "errors": float(errors.group(1)) if errors else 0.0}
    if pids is not None:
        for name, group in pids.items():
            result[f"cpu_us_{name}"] = 1e6 * max(used[pid] for pid in group) / total
        wrk_cpu = (ended.children_user - started.children_user) + (ended.children_system - started.children_system)
        result["cpu_us_wrk"] = 1e6 * wrk_cpu / total
        result["cpu_us"] = sum(v for k, v in result.items() if k.startswith("cpu_us_"))
    return result


@contextlib.contextmanager
def profiles(folder: str | None, name: str, pids: dict[str, list[int]], duration: float) -> Iterator[None]:
    """py-spy records each process of `pids` while the body runs (collapsed stacks, one file each)."""
    if not folder:
        yield
        return
    spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    Path(folder).mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "500", "--format", "raw", "--nonblocking",
                               "--gil", "--duration", str(max(1, round(duration))), "--output",
                               str(Path(folder) / f"{name.split()[0].lower()}-{group}-{pid}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for group, members in pids.items() for pid in members]
    try:
        yield
    finally:
        for proc in procs:
            proc.wait()


def bare_uvicorn(target: str, duration: float, connections: int) -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen([str(ROOT / ".venv/bin/uvicorn"), target, "--port", str(port), "--log-level", "warning",
                             "--no-access-log", "--loop", "asyncio", "--http", "httptools"]
                            + (["--factory"] if "make_" in target else []),
                            cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_ok(url)
        wrk(url, 1, connections)  # warm up
        return wrk(url, duration, connections, {"uvicorn": [proc.pid]})
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", choices=("raw", "fastapi"), help="measure one of the two apps")
    parser.add_argument("--profile", metavar="DIR",
                        help="record py-spy profiles (collapsed stacks) of the control plane and the container "
                             "during the gateway's runs into DIR (needs py-spy: .venv/bin/pip install py-spy)")
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/web.py needs wrk: apt-get install wrk (scripts/setup does it as root)")
    from skylift.testing import local_platform

    results: dict[str, dict[str, float]] = {}
    with local_platform(tempfile.mkdtemp(prefix="skylift-webbench-")) as platform:
        import web_app

        with web_app.app.run():
            for fn in (web_app.raw, web_app.fast):  # both containers up before anything is measured
                wait_ok((fn.get_web_url() or "") + "/")
            for name, fn, bare in (("raw ASGI", web_app.raw, "web_app:raw_app"),
                                   ("FastAPI", web_app.fast, "web_app:make_fastapi_app")):
                if opts.only and opts.only != ("raw" if fn is web_app.raw else "fastapi"):
                    continue
                url = (fn.get_web_url() or "") + "/"
                wait_ok(url)
                wrk(url, 1, opts.connections)  # warm up
                pids = {"control_plane": [platform.pid], "container": containers(platform.pid)}
                with profiles(opts.profile, name, pids, opts.duration):
                    results[f"{name} via gateway"] = wrk(url, opts.duration, opts.connections, pids)
                results[f"{name} bare uvicorn"] = bare_uvicorn(bare, opts.duration, opts.connections)
    print(f"\nwrk -t1 -c{opts.connections} -d{opts.duration:g}s on {os.cpu_count()} CPUs\n")
    print(f"{'':28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}   CPU µs/request")
    for what, r in results.items():
        parts = ", ".join(f"{k[7:].replace('_', ' ')} {v:.0f}" for k, v in r.items() if k.startswith("cpu_us_"))
        print(f"{what:28}{r['rps']:>10,.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>8.0f}   "
              f"{r['cpu_us']:.0f} ({parts})")
    for name in ("raw ASGI", "FastAPI"):
        if f"{name} via gateway" not in results:
            continue
        gateway, bare = results[f"{name} via gateway"], results[f"{name} bare uvicorn"]
        ratio = gateway["rps"] / bare["rps"]
        cpu_ratio = bare["cpu_us"] / gateway["cpu_us"]
        results[f"{name} ratio"] = {"gateway_over_bare": ratio, "cpu_ratio": cpu_ratio}
        print(f"{name}: gateway / bare uvicorn = {ratio:.0%} (CPU ratio {cpu_ratio:.0%})")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "web.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
