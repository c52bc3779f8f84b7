"""Memory snapshots on the container runtime (root): each forked container is a container of its own.

The session's platform runs the container runtime when the host allows it (CI does). Templates
and their forks run as the root of a user namespace whose root is an unprivileged host uid, so a
function that undoes its own lock-down still can't reach the host (the last test). Tests ask for
true cold starts by stopping the pool's containers first (see docs/cold-starts.md).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from container_fixture import container_platform_fixture  # noqa: F401 - the container_platform fixture
from pool_helpers import call, containers, stop_all

from skylift.cli.main import cli
from skylift.worker.container import userns

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

EPERM = 1


def _idmap_unsupported() -> str | None:
    """Why this host can't show a directory through an idmapped mount (forks then start the ordinary way)."""
    from skylift import _libc

    home = os.environ["SKYLIFT_HOME"]
    try:
        userns_fd = userns.fork_userns().open()
        try:
            os.close(_libc.open_tree_idmapped(home, userns_fd))
        finally:
            os.close(userns_fd)
    except OSError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def forking(container_platform: Any) -> Any:
    why = _idmap_unsupported()
    if why is not None:
        pytest.skip(f"forked containers need idmapped mounts, which this host refuses ({why})")
    return container_platform


@pytest.fixture(scope="module")
def snaps(forking: Any) -> Iterator[Any]:
    from apps import container_snapshots

    with container_snapshots.app.run():
        yield container_snapshots


def test_a_forked_container_has_the_snapshot_and_is_locked_down(snaps: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    seen = snaps.Snapped(tag=tag).probe.remote()
    [task] = containers("Snapped")
    assert task["start"] == "fork"
    assert seen["weights"] == list(range(10)) and seen["snapshot_file"] == tag  # memory and files of the snapshot
    assert seen["pid"] == 2 and seen["processes"] == ["1", "2"]  # a pid namespace of its own: init, runtime
    assert seen["hostname"] == "skylift"
    # The container's capabilities only (policy.CAPABILITIES), no_new_privs, the seccomp filter.
    assert int(seen["cap_bnd"], 16) == int(seen["cap_eff"], 16) == 0x4FB
    assert seen["no_new_privs"] == "1" and seen["seccomp"] == "2"
    assert seen["attempts"] == {"unshare_user": EPERM, "unshare_mount": EPERM, "mount_tmpfs": EPERM}
    assert seen["core_pattern"].startswith("OSError")  # /proc/sys is read-only
    assert seen["template_unshare_user"] == EPERM  # the template's code can't make a user namespace
    assert all(not entries for entries in seen["fork_dirs"].values()), seen["fork_dirs"]
    # root inside, an unprivileged host uid outside
    assert seen["uid_map"] == ["0", str(userns.BASE), str(userns.SIZE)] and seen["uid"] == 0


def test_containers_forked_from_one_template_are_isolated(snaps: Any) -> None:
    stop_all("Snapped")
    model = snaps.Snapped(tag=uuid.uuid4().hex[:8])
    first = model.probe.spawn(write="first", hold=1.5)
    time.sleep(0.3)
    second = model.probe.spawn(hold=1.0)
    a, b = first.get(timeout=60), second.get(timeout=60)
    assert a["task_id"] != b["task_id"]  # two containers, both forked
    assert {t["start"] for t in containers("Snapped")} == {"fork"}
    assert a["seen"] == {"/root/written": "first", "/tmp/written": "first", "/dev/shm/written": "first"}
    assert b["seen"] == {"/root/written": None, "/tmp/written": None, "/dev/shm/written": None}
    assert a["processes"] == b["processes"] == ["1", "2"]
    # and the next container starts from the snapshot again, not from what one container wrote
    stop_all("Snapped")
    assert model.probe.remote()["seen"]["/root/written"] is None


def test_block_network_leaves_loopback_and_others_get_their_own_network(snaps: Any) -> None:
    seen = snaps.offline.remote()
    assert seen["outbound"].startswith("OSError") and seen["interfaces"] == ["lo"]
    assert sorted(snaps.online.remote()) == ["eth0", "lo"]
    assert {t["start"] for t in containers("offline") + containers("online")} == {"fork"}


def test_a_forked_container_sees_its_own_cgroup_limits(snaps: Any) -> None:
    seen = snaps.limits.remote()
    assert seen["cpu"].split()[0] == "25000"  # a quarter of each 100 ms period (v1 quota or v2 cpu.max)
    assert seen["memory"] == str(96 << 20)
    assert {t["start"] for t in containers("limits")} == {"fork"}


def test_the_memory_limit_holds_for_a_forked_container(snaps: Any) -> None:
    with pytest.raises(Exception, match="exceeded its memory limit of 64 MiB"):
        snaps.hog.remote()


def test_exec_reaches_a_forked_container(snaps: Any) -> None:
    model = snaps.Snapped(tag=uuid.uuid4().hex[:8])
    model.probe.remote()
    task_id = next(t["task_id"] for t in containers("Snapped") if t["start"] == "fork")
    script = "hostname; ls /proc | grep -c '^[0-9]'"
    result = CliRunner().invoke(cli, ["container", "exec", task_id, "--", "sh", "-c", script])
    assert result.exit_code == 0, result.output
    lines = result.output.split()
    assert lines[0] == "skylift" and int(lines[1]) <= 5  # its init and runtime, sh, ls and grep


def test_a_forked_container_gets_its_volume_and_commits_to_it(snaps: Any) -> None:
    value = uuid.uuid4().hex
    assert snaps.WithVolume().write.remote(value) == {"before": None, "template_saw_volume": False}
    assert {t["start"] for t in containers("WithVolume")} == {"fork"}
    assert b"".join(snaps.vol.read_file(f"{value}.txt")) == value.encode()
    stop_all("WithVolume")  # the next container is forked anew, and mounts what was committed
    assert snaps.WithVolume().write.remote(value) == {"before": value, "template_saw_volume": False}


def test_a_function_that_undoes_its_lock_down_still_cannot_reach_the_host(forking: Any) -> None:
    from apps import container_snapshot_escape as escape

    with escape.app.run():
        seen = escape.try_escape.remote()
    assert seen["cap_eff"] != "0000000000000000"  # the lock-down really was skipped
    assert seen["unmounted_proc_sys"] is True  # and it could even take the masks off
    assert seen["core_pattern"] == "PermissionError"  # but the host's sysctls are not its root's
    assert seen["sysrq"] in ("PermissionError", "missing")
    assert seen["uid_map"] == ["0", str(userns.BASE), str(userns.SIZE)]


def test_a_forked_containers_init_reaps_orphans(snaps: Any) -> None:
    seen = snaps.orphans.remote()
    assert seen["zombies"] == [], seen


def test_a_forked_containers_writable_layer_and_tmp_are_bounded(snaps: Any) -> None:
    for path in ("/root/big", "/tmp/big"):
        seen = snaps.fill.remote(path)
        assert seen["errno"] == 28 and seen["written"] <= 64 << 20, (path, seen)  # ENOSPC, no OOM kill
    assert {t["start"] for t in containers("fill")} == {"fork"}


def test_a_container_from_a_pre_forked_spare_is_locked_down_like_any_fork(snaps: Any) -> None:
    """After a fork the worker prepares the template's next container ahead (worker/spares.py); the pool's
    next cold start is that spare, activated: the same lock-down, namespaces and user namespace, its own task."""
    stop_all("Snapped")
    model = snaps.Snapped(tag=uuid.uuid4().hex[:8])  # a template of its own; its first fork is made on request
    first = model.probe.remote()
    deadline = time.monotonic() + 60
    while True:
        stop_all("Snapped")
        seen = model.probe.remote()  # a true cold start: from the spare made after the last fork
        [task] = containers("Snapped")
        note = (call("task.get", {"task_id": task["task_id"]})["task"]["profile"].get("worker") or {}).get("note")
        if note == "from a pre-forked spare":
            break
        assert time.monotonic() < deadline, f"no container came from a spare (last: {note!r})"
    assert seen["task_id"] == task["task_id"] != first["task_id"]
    assert seen["snapshot_file"] == first["snapshot_file"] and seen["weights"] == list(range(10))
    assert seen["pid"] == 2 and seen["processes"] == ["1", "2"] and seen["hostname"] == "skylift"
    assert int(seen["cap_bnd"], 16) == int(seen["cap_eff"], 16) == 0x4FB
    assert seen["no_new_privs"] == "1" and seen["seccomp"] == "2"
    assert seen["attempts"] == {"unshare_user": EPERM, "unshare_mount": EPERM, "mount_tmpfs": EPERM}
    assert seen["core_pattern"].startswith("OSError")
    assert seen["uid_map"] == ["0", str(userns.BASE), str(userns.SIZE)] and seen["uid"] == 0
    assert seen["seen"] == {"/root/written": None, "/tmp/written": None, "/dev/shm/written": None}
