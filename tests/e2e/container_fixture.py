"""`container_platform`: the session's platform, for tests that need its worker on the container runtime.

Imported by the test modules that use it (`from container_fixture import container_platform_fixture`); not a
conftest.py, whose module name would clash with the other test directories' conftest modules.
"""

from __future__ import annotations

import time
from typing import Any

import pytest


@pytest.fixture(scope="session", name="container_platform")
def container_platform_fixture(platform: Any) -> Any:
    """The session's platform, when its worker runs the container runtime; else the test is skipped."""
    from skylift._client import Client, run_sync

    deadline = time.monotonic() + 30
    while True:  # the embedded worker registers a moment after the control plane starts
        status = run_sync(Client.from_env().call("server.status", {}))
        runtimes = {r for worker in status["workers"] for r in worker["runtimes"]}
        if runtimes or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if "container" not in runtimes:
        pytest.skip(f"the platform's worker runs {sorted(runtimes)}, not the container runtime (needs root, "
                    "bubblewrap and the packages in src/skylift/worker/container/DEBIAN_PACKAGES)")
    return platform
