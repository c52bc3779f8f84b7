"""The home is private to its owner whatever the umask: 0700, its state files 0600 (issue 9, finding 7)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from skylift import _local_server, _private_home
from skylift.server import ControlPlane


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_platform_the_sdk_starts_keeps_its_state_private(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "home"
    _local_server.start(home, extra_args=["--no-worker"], quiet=True)
    try:
        assert _mode(home) == 0o700
        for name in ("state.db", "state.db-wal", "state.db-shm", "server.log", "server.json", "token",
                     "server.lock", "launch.lock"):
            assert (home / name).exists(), name
            assert _mode(home / name) == 0o600, name
        assert _mode(home / "socket") == 0o700
    finally:
        assert _local_server.stop(home)


def test_a_home_made_by_an_older_version_is_tightened_at_start(tmp_path: Path, umask_022: None) -> None:
    home = tmp_path / "home"
    (home / "blobs").mkdir(parents=True)
    os.chmod(home, 0o755)
    for name in ("state.db", "server.log", "token", "worker_token"):
        (home / name).write_text("x\n" if "token" in name else "")
        os.chmod(home / name, 0o644)
    cp = ControlPlane(home)
    try:
        assert _mode(home) == 0o700 and _mode(home / "blobs") == 0o700
        for name in ("state.db", "state.db-wal", "state.db-shm", "server.log", "token", "worker_token"):
            assert _mode(home / name) == 0o600, name
    finally:
        cp.db.close()


def test_private_files_are_created_with_their_mode(tmp_path: Path, umask_022: None) -> None:
    with _private_home.open_private(tmp_path / "log", "ab") as f:
        f.write(b"line\n")
    _private_home.write_private(tmp_path / "info.json", "{}\n")
    _private_home.private_file(tmp_path / "db")
    assert [_mode(tmp_path / n) for n in ("log", "info.json", "db")] == [0o600] * 3
    assert (tmp_path / "info.json").read_text() == "{}\n" and len(list(tmp_path.iterdir())) == 3
