"""Fixtures of the fault-injection suite (tests/chaos; docs/chaos.md)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiers import Figures


@pytest.fixture
def chaos_figures(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Figures]:
    """This scenario's figures; written to `<basetemp>/chaos-figures.txt` even when it fails."""
    figures = Figures(tmp_path_factory.getbasetemp() / "chaos-figures.txt", request.node.name)
    yield figures
    figures.emit()


@pytest.fixture
def chaos_home() -> Iterator[Path]:
    # Short paths: the control plane's unix socket path must fit in 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="slc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
