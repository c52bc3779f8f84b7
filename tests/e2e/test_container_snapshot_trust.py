"""Without being told to trust the functions' code, a container worker doesn't fork from snapshots."""

from __future__ import annotations

import json
from typing import Any

import pytest
from container_fixture import container_platform_fixture  # noqa: F401 - the container_platform fixture

from skylift._client import Client, run_sync
from skylift.worker.snapshot_runtime import TRUST_ENV, TRUST_VALUE

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def test_snapshot_containers_start_the_ordinary_way_and_say_how_to_opt_in(container_platform: Any) -> None:
    from apps import container_snapshots

    with container_snapshots.app.run():
        interfaces = container_snapshots.online.remote()
        client = Client.from_env()
        [task] = [t for t in run_sync(client.call("task.list", {"environment": "main"}))["tasks"]
                  if t["function_tag"] == "online"]
        detail = run_sync(client.call("task.get", {"task_id": task["task_id"]}))["task"]
    assert sorted(interfaces) == ["eth0", "lo"]
    assert task["start"] != "fork"
    assert f"{TRUST_ENV}={TRUST_VALUE}" in json.dumps(detail["profile"])
