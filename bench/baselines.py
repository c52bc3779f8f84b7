"""The same work done by concurrent.futures.ProcessPoolExecutor, measured in the same run."""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor


def _noop(x=None):  # type: ignore[no-untyped-def]
    return x


def _sleep10(x=None):  # type: ignore[no-untyped-def]
    time.sleep(0.01)
    return x


def ppe_remote_latencies(n: int) -> list[float]:
    with ProcessPoolExecutor(1) as pool:
        pool.submit(_noop).result()
        out = []
        for i in range(n):
            t = time.perf_counter()
            pool.submit(_noop, i).result()
            out.append(time.perf_counter() - t)
        return out


def ppe_map_rate(n: int, chunksize: int) -> float:
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_noop, range(100)))
        t = time.perf_counter()
        for _ in pool.map(_noop, range(n), chunksize=chunksize):
            pass
        return n / (time.perf_counter() - t)


def ppe_sleep_rate(n: int, workers: int = 2) -> float:
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_noop, range(10)))
        t = time.perf_counter()
        list(pool.map(_sleep10, range(n)))
        return n / (time.perf_counter() - t)


def ppe_cold_start() -> float:
    t = time.perf_counter()
    with ProcessPoolExecutor(1) as pool:
        pool.submit(_noop).result()
    return time.perf_counter() - t
