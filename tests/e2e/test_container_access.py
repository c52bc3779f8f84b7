"""Issue 9, finding 1, on a real platform: a function's container may call a deployed function (Modal's
semantics) but can't stop another app or act as an operator (docs/security.md)."""

from __future__ import annotations

from apps import access

import skylift as modal


def test_a_container_is_a_workload_not_an_operator(platform: object) -> None:
    access.victim.deploy(name="e2e-access-victim")
    with access.app.run():
        got = access.act_as_operator.remote("e2e-access-victim")
    assert got["called"] == 42
    for method in ("stop", "shutdown", "tasks"):
        assert got[method].startswith("refused: container "), (method, got[method])
    assert "not created by this container" in got["stop"]
    # The victim still serves.
    assert modal.Function.from_name("e2e-access-victim", "ping").remote(1) == 2
