"""Storage benchmark: Dict and Queue round trips, volume commit/reload of many small files.

    .venv/bin/python bench/storage.py [--quick] [--files N]

Each figure is printed beside a baseline measured in the same run:
  * Dict put/get      vs a `multiprocessing.Manager().dict()` round trip, and a local SQLite
                      upsert/select committed the same way (WAL, synchronous=NORMAL, one commit per put)
  * Queue put/get     vs a `multiprocessing.Manager().Queue()` round trip
  * blocked get wake  vs the same with a Manager queue (a consumer thread blocked in get)
  * volume commit     (scan + hash + upload + commit of N new small files) vs `shutil.copytree` of them
  * no-op commit      (N files, nothing changed: a stat walk, nothing hashed) vs `os.walk` + stat
  * 1 file changed    (the same walk, one file hashed and uploaded) vs `os.walk` + stat
  * reload            (N files fetched and written into an empty mount) vs `shutil.copytree`
  * mount             (the worker materialising N files from its blob cache) vs `shutil.copytree`

The commit, reload and mount rows run the exact code containers and workers use
(`_volumes.mount.commit/reload`, `worker.volumes.materialize`) against the real control plane,
from this process. Uses its own SKYLIFT_HOME (a temp dir) unless SKYLIFT_HOME is set.
Writes bench/results/storage.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

rows: list[tuple[str, str, str, str, str]] = []
results: dict[str, float] = {}


def row(what: str, ours: float, base: float, unit: str, baseline: str) -> None:
    ratio = ours / base if base else float("nan")
    rows.append((what, f"{ours:,.3f} {unit}", f"{base:,.3f} {unit}", f"{ratio:.2f}x", baseline))
    results[what] = ours
    results[what + " [baseline]"] = base
    print(f"  {what}: skylift {ours:,.3f} {unit} | {baseline} {base:,.3f} {unit} | {ratio:.2f}x", flush=True)


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def p50_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def bench_dict_and_queue(n: int) -> None:
    import skylift as modal

    d = modal.Dict.from_name("bench-dict", create_if_missing=True)
    q = modal.Queue.from_name("bench-queue", create_if_missing=True)
    d.clear()
    q.clear(all=True)
    value = {"id": 1, "payload": "x" * 100}
    d.put("warm", value)
    keys = iter(range(10**9))
    put = timed(lambda: d.put(f"k{next(keys)}", value), n)
    get = timed(lambda: d.get("k1"), n)

    manager = multiprocessing.Manager()
    md = manager.dict()
    mkeys = iter(range(10**9))
    m_put = timed(lambda: md.__setitem__(f"k{next(mkeys)}", value), n)
    m_get = timed(lambda: md.get("k1"), n)

    db_path = Path(tempfile.mkdtemp(prefix="bench-sqlite-")) / "d.db"
    db = sqlite3.connect(str(db_path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE d (k BLOB PRIMARY KEY, v BLOB)")
    import pickle

    skeys = iter(range(10**9))
    blob = pickle.dumps(value)
    s_put = timed(lambda: db.execute("INSERT INTO d VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                                     (pickle.dumps(f"k{next(skeys)}"), blob)), n)
    s_get = timed(lambda: pickle.loads(db.execute("SELECT v FROM d WHERE k = ?",
                                                  (pickle.dumps("k1"),)).fetchone()[0]), n)
    row("Dict.put p50 (durable)", p50_us(put), p50_us(m_put), "µs", "Manager().dict() set")
    row("Dict.put p50 vs local SQLite commit", p50_us(put), p50_us(s_put), "µs", "local SQLite upsert")
    row("Dict.get p50", p50_us(get), p50_us(m_get), "µs", "Manager().dict() get")
    row("Dict.get p50 vs local SQLite select", p50_us(get), p50_us(s_get), "µs", "local SQLite select")

    q.put("warm")
    q.get()
    qput = timed(lambda: q.put(value), n)
    qget = timed(lambda: q.get(), n)
    mq = manager.Queue()
    m_qput = timed(lambda: mq.put(value), n)
    m_qget = timed(lambda: mq.get(), n)
    row("Queue.put p50 (durable)", p50_us(qput), p50_us(m_qput), "µs", "Manager().Queue() put")
    row("Queue.get p50", p50_us(qget), p50_us(m_qget), "µs", "Manager().Queue() get")

    def wake_latency(put: Callable[[Any], None], get: Callable[[], Any], rounds: int) -> list[float]:
        out = []
        for _ in range(rounds):
            got = threading.Event()
            done_at: list[float] = []

            def consumer(got: threading.Event = got, done_at: list[float] = done_at) -> None:
                get()
                done_at.append(time.perf_counter())
                got.set()

            thread = threading.Thread(target=consumer)
            thread.start()
            time.sleep(0.05)  # the consumer is parked in get() by now
            t = time.perf_counter()
            put("item")
            got.wait(10)
            thread.join()
            out.append(done_at[0] - t)
        return out

    rounds = max(10, n // 50)
    ours = wake_latency(lambda v: q.put(v, partition="wake"), lambda: q.get(partition="wake", timeout=10), rounds)
    theirs = wake_latency(mq.put, lambda: mq.get(timeout=10), rounds)
    row("blocked Queue.get woken by a put, p50", p50_us(ours), p50_us(theirs), "µs", "Manager().Queue()")
    manager.shutdown()


def make_files(root: Path, n: int) -> None:
    for i in range(n):
        sub = root / f"d{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:06d}.txt").write_bytes(f"file {i} ".encode() * 8)


def bench_volumes(n: int) -> None:
    import skylift as modal
    from skylift._client import Client, run_sync
    from skylift._volumes import files as _volume_files
    from skylift._volumes.manifest import RACY_SECONDS
    from skylift._volumes.mount import MountedVolume, commit, reload
    from skylift.worker.blobs import BlobCache, DictBlobSource
    from skylift.worker.volumes import materialize

    work = Path(tempfile.mkdtemp(prefix="bench-volume-"))
    vol = modal.Volume.from_name(f"bench-vol-{os.getpid()}", create_if_missing=True)
    volume_id = vol.object_id
    client = Client.from_env()
    mount_dir = work / "mount"
    mount_dir.mkdir()
    base_file = work / "base"
    _volume_files.write_base(base_file, 0, {})
    mount = MountedVolume("/data", volume_id, mount_dir, base_file)
    make_files(mount_dir, n)

    t = time.perf_counter()
    sent = run_sync(commit(client, mount))
    commit_s = time.perf_counter() - t
    t = time.perf_counter()
    shutil.copytree(mount_dir, work / "copy1")
    copy_s = time.perf_counter() - t
    row(f"volume commit of {n:,} new small files", commit_s * 1000, copy_s * 1000, "ms", "copytree")
    assert sent >= n, sent

    # Files written less than RACY_SECONDS before a scan can't be vouched for by their mtime: the
    # next commit hashes them once more (and finds them unchanged). Measure that, then the steady state.
    time.sleep(RACY_SECONDS + 0.1)
    t = time.perf_counter()
    assert run_sync(commit(client, mount)) == 0
    racy_s = time.perf_counter() - t
    t = time.perf_counter()
    assert run_sync(commit(client, mount)) == 0
    noop_s = time.perf_counter() - t
    t = time.perf_counter()
    for dirpath, _, names in os.walk(mount_dir):
        for name in names:
            os.stat(os.path.join(dirpath, name))
    walk_s = time.perf_counter() - t
    row(f"first commit after the writes settled ({n:,} re-hashed)", racy_s * 1000, walk_s * 1000, "ms",
        "os.walk + stat")
    row(f"no-op commit ({n:,} files, none changed)", noop_s * 1000, walk_s * 1000, "ms", "os.walk + stat")

    (mount_dir / "d00" / "f000000.txt").write_text("changed")
    t = time.perf_counter()
    assert run_sync(commit(client, mount)) == 1
    one_s = time.perf_counter() - t
    row(f"commit of 1 changed file among {n:,}", one_s * 1000, walk_s * 1000, "ms", "os.walk + stat")

    other_dir = work / "other"
    other_dir.mkdir()
    other_base = work / "other.base"
    _volume_files.write_base(other_base, 0, {})
    other = MountedVolume("/data", volume_id, other_dir, other_base)
    t = time.perf_counter()
    run_sync(reload(client, other))
    reload_s = time.perf_counter() - t
    t = time.perf_counter()
    shutil.copytree(mount_dir, work / "copy2")
    copy2_s = time.perf_counter() - t
    row(f"reload of {n:,} files into an empty mount", reload_s * 1000, copy2_s * 1000, "ms", "copytree")
    assert sum(1 for _ in other_dir.rglob("*.txt")) == n

    cache = BlobCache(work / "cache", DictBlobSource())
    run_sync(materialize(client, cache, volume_id, work / "mount-cold", work / "cold.base"))
    t = time.perf_counter()
    run_sync(materialize(client, cache, volume_id, work / "mount-warm", work / "warm.base"))
    mount_s = time.perf_counter() - t
    t = time.perf_counter()
    shutil.copytree(mount_dir, work / "copy3")
    copy3_s = time.perf_counter() - t
    row(f"worker mounts {n:,} files (blob cache warm)", mount_s * 1000, copy3_s * 1000, "ms", "copytree")
    vol.objects.delete(vol.name or "", allow_missing=True)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--files", type=int, default=None, help="files in the volume rows (default 10,000)")
    opts = parser.parse_args()
    own_home = "SKYLIFT_HOME" not in os.environ
    os.environ.setdefault("SKYLIFT_HOME", tempfile.mkdtemp(prefix="skylift-bench-"))
    sys.path.insert(0, str(ROOT / "src"))
    try:
        t = time.perf_counter()
        import skylift as modal

        modal.Dict.from_name("bench-warm", create_if_missing=True).put("x", 1)  # starts the platform
        print(f"platform ready in {time.perf_counter() - t:.2f}s", flush=True)
        bench_dict_and_queue(200 if opts.quick else 2000)
        bench_volumes(opts.files or (1000 if opts.quick else 10_000))
    finally:
        if own_home:
            import subprocess

            subprocess.run([str(ROOT / ".venv/bin/skylift"), "server", "stop"], capture_output=True)
    print()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    width = max(len(r[0]) for r in rows)
    print(f"{'what'.ljust(width)}  {'skylift':>16}  {'baseline':>16}  ratio  baseline is")
    for what, ours, base, ratio, name in rows:
        print(f"{what.ljust(width)}  {ours:>16}  {base:>16}  {ratio:>6}  {name}")
    out = HERE / "results" / "storage.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
