"""Reading what the functions of chaos_apps.py left behind: which items ran, how often, as which input."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def read_runs(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    # A container killed mid-write may leave a torn last line; it carries no completed run.
    runs = []
    for line in text.splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def tally(runs: list[dict[str, Any]], n: int) -> dict[str, int]:
    """lost: items that never ran; duplicated: items that got a second input (a retry created it
    again); reruns: extra runs of one input (at-least-once after a kill, allowed); calls: how many
    calls the items were spread over (1 for one spawn_map)."""
    inputs: dict[int, set[str]] = defaultdict(set)
    runs_per_input: dict[str, int] = defaultdict(int)
    for run in runs:
        inputs[run["i"]].add(run["input_id"])
        runs_per_input[run["input_id"]] += 1
    return {
        "lost": sum(1 for i in range(n) if i not in inputs),
        "duplicated": sum(len(ids) - 1 for ids in inputs.values()),
        "reruns": sum(count - 1 for count in runs_per_input.values()),
        "stray": sum(1 for i in inputs if not 0 <= i < n),
        "calls": len({run["call_id"] for run in runs}),
    }
