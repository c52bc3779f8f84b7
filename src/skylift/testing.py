"""Start a real skylift platform (control plane + worker) on a temporary directory, for tests.

    from skylift.testing import local_platform

    def test_square():
        with local_platform():
            with app.run():
                assert square.remote(3) == 9

Like temporal's `start_local()`: nothing is mocked; the platform runs as a subprocess with its own
SKYLIFT_HOME and is stopped (with every container) at the end.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import _client, _local_server


@dataclass
class Platform:
    home: Path
    url: str
    pid: int

    @property
    def log(self) -> str:
        try:
            return (self.home / "server.log").read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def local_platform(home: str | os.PathLike[str] | None = None) -> Iterator[Platform]:
    """Run a private platform for the duration of the block; clients in this process use it."""
    with contextlib.ExitStack() as stack:
        if home is None:
            home = stack.enter_context(tempfile.TemporaryDirectory(prefix="skylift-test-"))
        home_path = Path(home)
        saved = {k: os.environ.get(k) for k in ("SKYLIFT_HOME", "SKYLIFT_SERVER_URL", "SKYLIFT_TOKEN")}
        os.environ["SKYLIFT_HOME"] = str(home_path)
        os.environ.pop("SKYLIFT_SERVER_URL", None)
        os.environ.pop("SKYLIFT_TOKEN", None)
        _client.reset_default_client()
        try:
            info = _local_server.start(home_path, quiet=True)
            yield Platform(home_path, info.unix_url, info.pid)
        finally:
            _client.reset_default_client()
            _local_server.stop(home_path)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
