"""The functions the fault-injection suite runs; imported by the tests and, in containers, by skylift."""

from __future__ import annotations

import json
import os
import time

import skylift as modal

app = modal.App("chaos")


def _append(path: str, record: dict[str, object]) -> None:
    # One O_APPEND write per line: lines of concurrent containers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


@app.function(scaledown_window=60)
def record(i: int, runs: str, delay: float = 0.0) -> int:
    """Append (i, input id, call id) to `runs` when the work is done: the suite's evidence of each run."""
    if delay:
        time.sleep(delay)
    _append(runs, {"i": i, "input_id": modal.current_input_id(), "call_id": modal.current_function_call_id(),
                   "pid": os.getpid()})
    return i * i


@app.function(scaledown_window=60)
def square(i: int, delay: float = 0.0) -> int:
    if delay:
        time.sleep(delay)
    return i * i


@app.function(scaledown_window=60)
def stall(marker: str, hold: float) -> dict[str, object]:
    """The first run announces its pid in `marker` and holds for `hold` s (the test SIGSTOPs it then);
    later runs return at once. The result says which run produced it."""
    first = not os.path.exists(marker)
    if first:
        _append(marker, {"pid": os.getpid(), "input_id": modal.current_input_id()})
        time.sleep(hold)
    return {"first": first, "pid": os.getpid(), "input_id": modal.current_input_id()}


@app.function(min_containers=1, scaledown_window=600)
def whoami() -> dict[str, str]:
    """This container's identity and token: the fuzzer speaks as a container with them."""
    return {"task_id": os.environ["SKYLIFT_TASK_ID"], "token": os.environ["SKYLIFT_TASK_TOKEN"]}
