"""Committed volume data, Dict entries, Queue items and Secrets survive `kill -9` of the control plane."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
from apps import storage

import skylift as modal
from skylift import _client, _local_server
from skylift.testing import local_platform


def _wait_dead(pid: int) -> None:
    launched = _local_server._launched.pop(pid, None)
    if launched is not None:  # our child: reap it through its Popen
        launched.wait(10)
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"control plane {pid} did not die")


def test_everything_committed_survives_kill_9(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The process runtime starts in a fresh home at once (no image to build for the container runtime).
    monkeypatch.setenv("SKYLIFT_RUNTIME", "process")
    with local_platform(tmp_path / "home") as platform:
        modal.Secret.objects.create(storage.SECRET_NAME, {"FROM_NAMED": "kept"})
        d = modal.Dict.from_name("durable-dict", create_if_missing=True)
        d.update({"a": 1, ("t", 2): [3]})
        q = modal.Queue.from_name("durable-queue", create_if_missing=True)
        q.put_many([1, 2, 3])
        q.put("p", partition="part")
        assert q.get() == 1  # taken before the crash: stays taken
        vol = modal.Volume.from_name("durable-vol", create_if_missing=True)
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"uploaded"), "/up.txt")
        if os.geteuid() == 0:  # a container's commit (volumes at /data need root in the process runtime)
            with storage.app.run():
                storage.write_files.remote({"from-container.txt": "committed"})

        os.kill(platform.pid, signal.SIGKILL)
        _wait_dead(platform.pid)
        _client.reset_default_client()  # the next call starts a new control plane on the same home

        assert d["a"] == 1 and d[("t", 2)] == [3] and len(d) == 2
        assert q.get_many(10) == [2, 3] and q.get(partition="part") == "p"
        assert b"".join(vol.read_file("/up.txt")) == b"uploaded"
        if os.geteuid() == 0:
            assert b"".join(storage.vol.read_file("from-container.txt")) == b"committed"
        secret = modal.Secret.from_name(storage.SECRET_NAME, required_keys=["FROM_NAMED"])
        assert secret.hydrate().object_id.startswith("st-")
        with storage.app.run():
            assert storage.read_env.remote(["FROM_NAMED"]) == {"FROM_NAMED": "kept"}  # decrypts after restart
