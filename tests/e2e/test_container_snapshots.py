"""Memory snapshots on the container runtime (root): each forked container is a container of its own.

These run on a platform of their own whose worker trusts the functions' code with the host
(`SKYLIFT_CONTAINER_SNAPSHOTS=trust-code`), when the session's platform shows the container
runtime works here (CI's does); without that trust a worker starts such containers the ordinary
way (test_container_snapshot_trust.py). Tests ask for true cold starts by stopping the pool's
containers first (see docs/cold-starts.md).
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
from pool_helpers import containers, stop_all

from skylift.cli.main import cli
from skylift.testing import local_platform
from skylift.worker.snapshot_runtime import TRUST_ENV, TRUST_VALUE

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

EPERM = 1


@pytest.fixture(scope="module")
def snaps(container_platform: Any) -> Iterator[Any]:
    from apps import container_snapshots

    saved = {name: os.environ.get(name) for name in ("SKYLIFT_RUNTIME", TRUST_ENV)}
    os.environ.update({"SKYLIFT_RUNTIME": "container", TRUST_ENV: TRUST_VALUE})
    try:
        with local_platform(), container_snapshots.app.run():
            yield container_snapshots
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_a_forked_container_has_the_snapshot_and_is_locked_down(snaps: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    seen = snaps.Snapped(tag=tag).probe.remote()
    [task] = containers("Snapped")
    assert task["start"] == "fork"
    assert seen["weights"] == list(range(10)) and seen["snapshot_file"] == tag  # memory and files of the snapshot
    assert seen["pid"] == 1 and seen["processes"] == ["1"]  # a pid namespace of its own
    assert seen["hostname"] == "skylift"
    # The container's capabilities only (policy.CAPABILITIES), no_new_privs, the seccomp filter.
    assert int(seen["cap_bnd"], 16) == int(seen["cap_eff"], 16) == 0x4FB
    assert seen["no_new_privs"] == "1" and seen["seccomp"] == "2"
    assert seen["attempts"] == {"unshare_user": EPERM, "unshare_mount": EPERM, "mount_tmpfs": EPERM}
    assert seen["core_pattern"].startswith("OSError")  # /proc/sys is read-only
    # The template's own code could not make namespaces or mounts either.
    assert seen["template_attempts"] == {"unshare_user": EPERM, "unshare_mount": EPERM, "mount_tmpfs": EPERM}
    assert all(not entries for entries in seen["fork_dirs"].values()), seen["fork_dirs"]


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
    assert a["processes"] == b["processes"] == ["1"]
    # and the next container starts from the snapshot again, not from what one container wrote
    stop_all("Snapped")
    assert model.probe.remote()["seen"]["/root/written"] is None


def test_block_network_leaves_loopback_and_others_get_their_own_network(snaps: Any) -> None:
    seen = snaps.offline.remote()
    assert seen["outbound"].startswith("OSError") and seen["interfaces"] == ["lo"]
    assert sorted(snaps.online.remote()) == ["eth0", "lo"]
    assert {t["start"] for t in containers("offline") + containers("online")} == {"fork"}


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
    assert lines[0] == "skylift" and int(lines[1]) <= 4  # its pid 1, sh, ls and grep


def test_a_forked_container_gets_its_volume_and_commits_to_it(snaps: Any) -> None:
    value = uuid.uuid4().hex
    assert snaps.WithVolume().write.remote(value) == {"before": None, "template_saw_volume": False}
    assert {t["start"] for t in containers("WithVolume")} == {"fork"}
    assert b"".join(snaps.vol.read_file(f"{value}.txt")) == value.encode()
    stop_all("WithVolume")  # the next container is forked anew, and mounts what was committed
    assert snaps.WithVolume().write.remote(value) == {"before": value, "template_saw_volume": False}
