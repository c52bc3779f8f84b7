"""Looking at and stopping a pool's containers through the admin API (the e2e snapshot tests).

Imported by the test modules that use it, like container_fixture.py (not a conftest.py).
"""

from __future__ import annotations

import time
from typing import Any

from skylift._client import Client, run_sync


def call(method: str, params: dict[str, Any]) -> Any:
    return run_sync(Client.from_env().call(method, params))


def containers(tag: str) -> list[dict[str, Any]]:
    """The running containers of the function or class tagged `tag`, in environment main."""
    return [t for t in call("task.list", {"environment": "main"})["tasks"] if t["function_tag"] == tag]


def stop_all(tag: str, timeout: float = 30.0) -> None:
    """Stop the pool's containers and wait until they are gone: the next call is a true cold start."""
    ids = {t["task_id"] for t in containers(tag)}
    for task_id in ids:
        call("task.stop", {"task_id": task_id})
    deadline = time.monotonic() + timeout
    while ids & {t["task_id"] for t in containers(tag)}:
        assert time.monotonic() < deadline, f"containers {ids} did not stop"
        time.sleep(0.02)
