"""The pieces of memory snapshots that need no platform: the fork-server wire, snapshot keys,
the template's fork-safety checks, and CRIU detection (tests/e2e/test_snapshots.py runs the whole)."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skylift._protocol import api, forkserver
from skylift.worker import criu
from skylift.worker.runtime import ContainerSpec, SnapshotSource
from skylift.worker.snapshot_runtime import SnapshotRuntime, snapshot_key


def test_fork_server_messages_carry_fds_and_keep_their_boundaries(tmp_path: Path) -> None:
    ours, theirs = forkserver.pair()
    with ours, theirs:
        r, w = os.pipe()
        forkserver.send(ours, {"op": "fork", "task_id": "ta-1", "env": {"A": "1"}}, [w])
        forkserver.send(ours, {"op": "retire"})
        os.close(w)
        message, fds = forkserver.recv(theirs)
        assert message == {"op": "fork", "task_id": "ta-1", "env": {"A": "1"}} and len(fds) == 1
        os.write(fds[0], b"through the passed fd")
        os.close(fds[0])
        assert os.read(r, 100) == b"through the passed fd"
        os.close(r)
        assert forkserver.recv(theirs) == ({"op": "retire"}, [])
        theirs.send(b"\xc1 not msgpack")
        with pytest.raises(forkserver.ForkProtocolError, match="not msgpack"):
            forkserver.recv(ours)
        theirs.send(b"\x91\x01")  # a list, not a map with an op
        with pytest.raises(forkserver.ForkProtocolError, match="no 'op'"):
            forkserver.recv(ours)
    ours, theirs = forkserver.pair()
    theirs.close()
    with ours:
        assert forkserver.recv(ours) == (None, [])


def spec(task_id: str, *, qualname: str = "f", params: bytes | None = None,
         env: dict[str, str] | None = None) -> ContainerSpec:
    scratch = Path("/work/tasks") / task_id
    definition = {"tag": "f", "enable_memory_snapshot": True, "module": "m", "qualname": qualname}
    full_env = {"PATH": "/bin", "HOME": str(scratch), api.ENV_TASK_ID: task_id, api.ENV_TASK_TOKEN: f"t-{task_id}",
                "CUDA_VISIBLE_DEVICES": task_id[-1], "SKYLIFT_VOLUMES": f'{{"/data": "{scratch}/volumes/data"}}',
                **(env or {})}
    return ContainerSpec(task_id=task_id, argv=["/img/bin/python", "-m", "skylift._runtime"], env=full_env,
                         cwd=scratch, image_root=Path("/img"), scratch=scratch,
                         snapshot=SnapshotSource("fu-1", "im-1", definition, params))


def test_containers_of_one_pool_share_a_snapshot_key_and_versions_do_not() -> None:
    assert snapshot_key(spec("ta-1")) == snapshot_key(spec("ta-2"))
    assert snapshot_key(spec("ta-1")) != snapshot_key(spec("ta-1", qualname="g"))
    assert snapshot_key(spec("ta-1")) != snapshot_key(spec("ta-1", params=b"p"))
    assert snapshot_key(spec("ta-1")) != snapshot_key(spec("ta-1", env={"SECRET": "x"}))


def test_snapshots_are_forked_by_the_process_and_container_runtimes(tmp_path: Path) -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    for name in ("process", "container"):
        assert SnapshotRuntime(Named(name), tmp_path).snapshot_support() is None  # type: ignore[arg-type]
    runtime = SnapshotRuntime(Named("gvisor"), tmp_path)  # type: ignore[arg-type]
    assert runtime.name == "gvisor"
    assert "can't fork" in (runtime.snapshot_support() or "")


def test_a_forked_container_binds_its_own_volumes_not_the_runtimes(tmp_path: Path) -> None:
    from skylift.worker.container_layout import CONTROL_DIR, RUNTIME_DIR
    from skylift.worker.container_runtime import container_binds

    plain = spec("ta-1")
    plain.binds = [(tmp_path, f"{RUNTIME_DIR}/skylift", True), (tmp_path, CONTROL_DIR, True)]
    assert container_binds(plain) == []
    plain.binds += [(tmp_path / "vol", "/data", False), (tmp_path / "bucket", "/bucket", True)]
    assert container_binds(plain) == [(tmp_path / "vol", "/data", False), (tmp_path / "bucket", "/bucket", True)]


def test_a_template_refuses_to_fork_with_threads_or_sockets() -> None:
    script = textwrap.dedent("""
        import socket, threading, time
        from skylift._runtime.template import fork_problems
        print("clean:", fork_problems(-1))
        s = socket.socket()
        print("socket:", fork_problems(-1))
        s.close()
        threading.Thread(target=time.sleep, args=(5,), name="loader", daemon=True).start()
        print("thread:", fork_problems(-1))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["clean"] == "[]"
    assert "1 socket(s) are open" in lines["socket"] and "@enter(snap=False)" in lines["socket"]
    assert "1 Python thread(s) are running (loader)" in lines["thread"]


def test_criu_detection_says_why_it_cannot_persist_snapshots() -> None:
    assert doctest.testmod(criu).failed == 0
    old = criu.judge("/usr/sbin/criu", "Version: 3.17.1\n", None)
    assert not old.usable and old.version == "3.17.1" and "older than 4.1" in old.reason
    broken = criu.judge("/usr/sbin/criu", "Version: 4.1\n", (1, "Error (criu/vdso.c:...): bad\nLooks bad."))
    assert not broken.usable and "`criu check` fails here: Looks bad." in broken.reason
    assert criu.judge("/x/criu", "Version: 4.2.1", (0, "Looks good.")).usable
    missing = criu.detect(which=lambda name: None)
    assert not missing.usable and "not installed" in missing.reason
    assert "stay in memory" in criu.describe(missing)


def test_a_runtime_that_cannot_fork_starts_snapshot_containers_the_ordinary_way(tmp_path: Path) -> None:
    import asyncio

    class Sandboxes:
        def __init__(self, name: str) -> None:
            self.name = name
            self.started: list[str] = []

        async def start(self, spec: ContainerSpec, on_output: object) -> None:
            self.started.append(spec.task_id)

    # (a container runtime whose template can't start: this one has no start_template)
    for name, why in (("gvisor", "the gvisor runtime can't fork"), ("container", "template could not start")):
        inner = Sandboxes(name)
        notes: list[tuple[str, str]] = []
        runtime = SnapshotRuntime(inner, tmp_path, note=lambda task_id, text, notes=notes: notes.append(  # type: ignore[arg-type]
            (task_id, text)))
        asyncio.run(runtime.start(spec("ta-1"), lambda *a: None))
        assert inner.started == ["ta-1"]
        assert notes and notes[0][0] == "ta-1" and "memory snapshot not used" in notes[0][1]
        assert why in notes[0][1]
        profile = runtime.start_profile("ta-1")
        assert profile["how"] == name and "no snapshot" in profile["note"]
