"""Deployed apps: versions, lookup by name, warm pools, stop."""

from __future__ import annotations

import pytest
from apps import deployed

import skylift as modal
from skylift.exception import NotFoundError


def test_deploy_lookup_history_and_stop(platform: object) -> None:
    deployed.app.deploy()
    fn = modal.Function.from_name("e2e-deployed", "version")
    assert fn.remote() == "v-one"
    greeter = modal.Cls.from_name("e2e-deployed", "Greeter")
    assert greeter(greeting="hi").greet.remote("bob") == "hi bob"
    deployed.app.deploy()
    from skylift._client import Client, run_sync

    history = run_sync(Client.from_env().call("app.history", {"name": "e2e-deployed", "environment": "main"}))
    assert [v["version"] for v in history["versions"]][:2] in ([2, 1], [1, 2])
    assert modal.Function.from_name("e2e-deployed", "version").remote() == "v-one"
    stats = modal.Function.from_name("e2e-deployed", "version").get_current_stats()
    assert stats.num_total_runners >= 1  # min_containers=1 keeps one up with no traffic
    run_sync(Client.from_env().call("app.stop", {"name": "e2e-deployed", "environment": "main"}))
    with pytest.raises(NotFoundError):
        modal.Function.from_name("e2e-deployed", "version").remote()


def test_unknown_names_are_not_found(platform: object) -> None:
    with pytest.raises(NotFoundError, match="no-such-app"):
        modal.Function.from_name("no-such-app", "f").remote()
