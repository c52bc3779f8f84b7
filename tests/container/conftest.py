"""Fixtures for the container runtime: a Debian base built once per session, and a sandbox runner.

Tests that need root and a host where `available()` holds (CI installs the packages listed in
src/skylift/worker/container/DEBIAN_PACKAGES) say so with
`pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host")]`; elsewhere they are
skipped with the reason.
The base is cached under $SKYLIFT_TEST_IMAGE_CACHE (default: the worker's own cache, $SKYLIFT_IMAGE_CACHE or
/var/cache/skylift, so the e2e tests' containers share it): the first session pays for debootstrap (~45 s),
later ones reuse it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def _unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "containers need Linux"
    if os.geteuid() != 0:
        return "container tests need root (run them as root, as CI does)"
    from skylift.worker.container import available

    ok, why = available()
    return None if ok else f"the container runtime is unavailable here: {why}"


@pytest.fixture(scope="session")
def container_host() -> None:
    """Skip (with the reason) unless this host can run containers: modules use it via `pytestmark`."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def debian_base(container_host: None) -> Path:
    from skylift.worker.container import build_debian_base

    cache = Path(os.environ.get("SKYLIFT_TEST_IMAGE_CACHE") or os.environ.get("SKYLIFT_IMAGE_CACHE")
                 or "/var/cache/skylift")
    return build_debian_base(cache, "3.11", lambda line: print(line, file=sys.stderr))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    sandbox: Any


@pytest.fixture
def run_sandbox(debian_base: Path, tmp_path: Path) -> Iterator[Callable[..., Result]]:
    """Run a command in a fresh container on the Debian base and collect its output."""
    from skylift.worker.container import Sandbox, SandboxSpec

    count = 0

    async def _run(command: list[str], layers: list[Path] | None = None, **options: Any) -> Result:
        nonlocal count
        count += 1
        spec = SandboxSpec(layers=layers or [debian_base], command=command, task_id=f"ta-test{count}",
                           state_dir=tmp_path / f"sandbox{count}", **options)
        sandbox = await Sandbox.start(spec)
        out, err = await asyncio.gather(sandbox.stdout.read(), sandbox.stderr.read())
        code = await sandbox.wait()
        return Result(code, out.decode(), err.decode(), sandbox)

    def run(command: list[str], layers: list[Path] | None = None, **options: Any) -> Result:
        return asyncio.run(_run(command, layers, **options))

    yield run
