"""What a container's own credentials may do (tests/e2e/test_access.py, docs/security.md)."""

from __future__ import annotations

from typing import Any

import skylift as modal
from skylift._client import Client, run_sync
from skylift.exception import AuthError

victim = modal.App("e2e-access-victim")
app = modal.App("e2e-access")


@victim.function()
def ping(x: int) -> int:
    return x + 1


def _try(method: str, params: dict[str, Any]) -> str:
    try:
        run_sync(Client.from_env().call(method, params))
    except AuthError as exc:
        return f"refused: {exc}"
    return "allowed"


@app.function()
def act_as_operator(victim_name: str) -> dict[str, Any]:
    """From inside a function: a workload's rights (call a deployed function) but no operator's."""
    called = modal.Function.from_name(victim_name, "ping").remote(41)
    return {
        "called": called,
        "stop": _try("app.stop", {"name": victim_name, "environment": "main"}),
        "shutdown": _try("server.shutdown", {}),
        "tasks": _try("task.list", {}),
    }
