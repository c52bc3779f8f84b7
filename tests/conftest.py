"""Shared fixtures. Tests never touch ~/.skylift: each session gets its own SKYLIFT_HOME."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

_session_home = tempfile.mkdtemp(prefix="skylift-tests-")
os.environ["SKYLIFT_HOME"] = _session_home
os.environ.pop("SKYLIFT_SERVER_URL", None)


@pytest.fixture(scope="session")
def platform() -> Iterator[object]:
    """A real control plane + worker for the whole test session (see skylift.testing)."""
    from skylift.testing import local_platform

    with local_platform(os.path.join(_session_home, "platform")) as p:
        yield p
