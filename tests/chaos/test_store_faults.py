"""Store faults: 1 % of the control plane's writes fail, or commit and then report failure.

The workload a user runs (deploy, spawn calls, a map, read the spawned results) completes, each
failure the caller sees is a clean, retryable error (never an internal one), and every call whose
spawn was acknowledged is still there, with its result, after a restart on a healthy store.
"""

from __future__ import annotations

import ast
import contextlib
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import chaos_apps
import pytest
from chaos_platform import ChaosPlatform, running
from tiers import LONG, Figures, size

import skylift as modal
from skylift.exception import Error

RATE = 0.01
ATTEMPTS = 5  # a caller retries a failed operation this often, as a user's program would


def _with_retries(errors: Counter[str], fn: Any, *args: Any) -> Any:
    for attempt in range(ATTEMPTS):
        try:
            return fn(*args)
        except Error as exc:
            internal = type(exc) is Error  # the wire's "internal" code maps to the root class
            errors[f"{'INTERNAL ' if internal else ''}{type(exc).__name__}: {str(exc)[:80]}"] += 1
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


@pytest.mark.timeout(1800 if LONG else 120)
def test_store_faults_lose_nothing_acknowledged(chaos_home: Path, chaos_figures: Figures) -> None:
    n = size(200, 2000)
    errors: Counter[str] = Counter()
    acknowledged: dict[int, modal.FunctionCall] = {}
    # Seed 13: the first few hundred writes hit both kinds of fault.
    with running(chaos_home, store_faults=RATE, seed=13) as platform:
        _with_retries(errors, lambda: chaos_apps.app.deploy(name="chaos"))
        square = modal.Function.from_name("chaos", "square")
        for i in range(n):
            acknowledged[i] = _with_retries(errors, square.spawn, i)
        mapped = _with_retries(errors, lambda: list(square.map(range(n))))
        results = {i: _with_retries(errors, call.get, 60) for i, call in acknowledged.items()}
        rss_kib = platform.rss_kib()
    injected = _fault_counts(platform)
    # Calls whose start committed but was reported failed, then retried by the caller: run twice.
    with contextlib.closing(sqlite3.connect(chaos_home / "state.db")) as db:
        stored_calls = db.execute("SELECT count(*) FROM calls").fetchone()[0]
    # A healthy restart on the same home: every acknowledged call is still there, with its result.
    after: dict[int, Any] = {}
    with running(chaos_home):
        for i, call in acknowledged.items():
            try:
                after[i] = modal.FunctionCall.from_id(call.object_id).get(timeout=60)
            except Error as exc:
                after[i] = exc
    internal = sum(count for what, count in errors.items() if what.startswith("INTERNAL"))
    chaos_figures.values.update(spawns=n, map_inputs=n, **injected, caller_errors=sum(errors.values()),
                                internal_errors=internal, orphan_calls=stored_calls - n,
                                distinct_errors=dict(errors.most_common(6)),
                                server_rss_mib=rss_kib // 1024,
                                wrong=sum(1 for i in range(n) if results[i] != i * i),
                                lost_after_restart=sum(1 for i in range(n) if after.get(i) != i * i))
    assert injected.get("writes", 0) > 0, "the control plane never wrote through the faulty store"
    assert mapped == [i * i for i in range(n)]
    assert results == {i: i * i for i in range(n)}
    lost = {acknowledged[i].object_id: after[i] for i in range(n) if after[i] != results[i]}
    assert not lost, f"{len(lost)} acknowledged call(s) lost across the restart: {list(lost.items())[:3]}"
    assert internal == 0, f"store faults reached the caller as internal errors: {errors}"


def _fault_counts(platform: ChaosPlatform) -> dict[str, int]:
    """The store's fault counts, which chaos_server.py logs on its way out."""
    for line in reversed(platform.log().splitlines()):
        if "chaos store faults:" in line:
            counts: dict[str, int] = ast.literal_eval(line.split("chaos store faults:", 1)[1].strip())
            return counts
    return {}
