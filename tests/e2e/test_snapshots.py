"""Memory snapshots and warm pools end to end: a real control plane, worker, templates and forks.

These run on a platform of their own with the process runtime (whose forked containers are plain
processes a test can see into), whatever runtime the rest of the suite's platform picked; the
container runtime's forks are tested in test_container_snapshots.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apps import snapshot_v1, snapshot_v2, snapshots
from click.testing import CliRunner
from pool_helpers import call, containers, stop_all

from skylift.cli.main import cli
from skylift.exception import ExecutionError, FunctionTimeoutError
from skylift.testing import Platform, local_platform


@pytest.fixture(scope="module")
def process_platform() -> Iterator[Platform]:
    saved = os.environ.get("SKYLIFT_RUNTIME")
    os.environ["SKYLIFT_RUNTIME"] = "process"
    try:
        with local_platform() as p:
            yield p
    finally:
        if saved is None:
            os.environ.pop("SKYLIFT_RUNTIME", None)
        else:
            os.environ["SKYLIFT_RUNTIME"] = saved


@pytest.fixture(scope="module", autouse=True)
def running(process_platform: Platform) -> Iterator[None]:
    with snapshots.app.run():
        yield


def markers(workdir: Path, kind: str) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in workdir.glob(f"{kind}-*"))


def test_snap_true_runs_once_per_template_and_snap_false_once_per_container(tmp_path: Path) -> None:
    model = snapshots.Snapper(workdir=str(tmp_path))
    seen = []
    for _ in range(3):
        seen.append(model.info.remote())
        stop_all("Snapper")
    [template] = markers(tmp_path, "snap")
    entered = markers(tmp_path, "enter")
    assert len(entered) == 3 and template not in entered
    assert sorted(r["pid"] for r in seen) == entered  # one container each time, each its own process
    for result in seen:
        # Global imports and snap=True ran in the template; what they set is there after the fork.
        assert result["imported_by"] == template and result["loaded_by"] == template
        assert result["ppid"] == template and result["weights"] == [1, 2, 3]
        assert result["setup_by"] == result["pid"] and result["counter"] == 1


def test_forked_containers_are_isolated_from_each_other(tmp_path: Path) -> None:
    model = snapshots.Snapper(workdir=str(tmp_path))
    a, b = model.info.map([1.0, 1.0])  # held long enough that two containers run at once
    assert a["pid"] != b["pid"] and a["sid"] == a["pid"] and b["sid"] == b["pid"]  # own sessions
    assert a["task_id"] != b["task_id"] and a["random"] != b["random"]
    assert a["ppid"] == b["ppid"] == markers(tmp_path, "snap")[0]
    assert a["counter"] == b["counter"] == 1
    again = model.info.remote()  # a warm container keeps its own state; the other is untouched
    assert again["pid"] in (a["pid"], b["pid"]) and again["counter"] == 2
    profile = call("task.get", {"task_id": again["task_id"]})["task"]["profile"]
    assert profile["how"] == "fork" and profile["saved"]
    assert any(label == "fork" for label, _ in profile["phases"])


def test_a_function_with_snapshots_runs_its_imports_once() -> None:
    first = snapshots.snap_function.remote(1)
    stop_all("snap_function")
    second = snapshots.snap_function.remote(2)
    assert first["x"] == 1 and second["x"] == 2
    assert first["pid"] != second["pid"] and first["imported_by"] == second["imported_by"] != first["pid"]


@pytest.mark.skipif(os.geteuid() != 0, reason="volumes at their own paths need root (mount namespaces)")
def test_a_forked_container_sees_its_volumes_at_their_paths() -> None:
    first = snapshots.write_to_volume.remote("a.txt", "one")
    stop_all("write_to_volume")
    second = snapshots.write_to_volume.remote("b.txt", "two")
    assert first["pid"] != first["imported_by"] and second["imported_by"] == first["imported_by"]
    assert second["listing"] == ["a.txt", "b.txt"]
    assert b"".join(snapshots.snap_vol.read_file("b.txt")) == b"two"
    assert not Path("/snapvol").exists() or not any(Path("/snapvol").iterdir())  # only inside the containers


def test_a_forked_container_that_times_out_is_killed_and_the_next_one_forks() -> None:
    with pytest.raises(FunctionTimeoutError):
        snapshots.sleeps.remote(30)
    assert snapshots.sleeps.remote(0) > 0
    [task] = containers("sleeps")
    assert call("task.get", {"task_id": task["task_id"]})["task"]["start"] == "fork"


def test_a_template_with_threads_is_refused_and_containers_start_from_scratch(tmp_path: Path) -> None:
    pid = snapshots.Threaded(workdir=str(tmp_path)).pid.remote()
    # The refused template ran snap=True once; the container, started from scratch, ran it again.
    assert len(markers(tmp_path, "snap")) == 2 and pid in markers(tmp_path, "snap")
    [task] = containers("Threaded")
    logs = call("task.logs", {"task_id": task["task_id"], "after_seq": 0, "timeout": 5})["entries"]
    text = "\n".join(e["text"] for e in logs)
    assert "memory snapshot not used" in text and "snap-thread" in text


def test_a_failing_snap_true_hook_fails_the_call_with_its_error() -> None:
    with pytest.raises(ExecutionError, match="the weights are missing"):
        snapshots.BrokenSnap().run.remote()
    logs = call("app.logs", {"app_id": snapshots.app.app_id, "after_seq": 0, "timeout": 0})["entries"]
    assert any("memory snapshot not used" in e["text"] and "the weights are missing" in e["text"] for e in logs)


def test_min_containers_keeps_containers_up_with_no_traffic() -> None:
    deadline = time.monotonic() + 20
    while len([t for t in containers("warm") if t["state"] == "ready"]) < 2:
        assert time.monotonic() < deadline, containers("warm")
        time.sleep(0.05)
    time.sleep(2.5)  # past scaledown_window=2: min_containers is a floor, not a target to leave
    warm = containers("warm")
    assert len(warm) == 2 and all(t["served"] == 0 and t["idle"] is not None for t in warm)
    runner = CliRunner()
    listed = runner.invoke(cli, ["container", "list"])
    assert listed.exit_code == 0, listed.output
    assert all(t["task_id"] in listed.output for t in warm)
    task_id = warm[0]["task_id"]
    done = runner.invoke(cli, ["container", "exec", task_id, "sh", "-c", "echo $SKYLIFT_TASK_ID"])
    assert done.exit_code == 0 and done.output.strip() == task_id
    profile = runner.invoke(cli, ["container", "profile", task_id])
    assert profile.exit_code == 0 and "process start" in profile.output and "total (to ready)" in profile.output
    logs = runner.invoke(cli, ["container", "logs", task_id])
    assert logs.exit_code == 0 and "container ready in" in logs.output


def test_min_containers_of_a_cls_warm_the_pool_its_default_parameters_use() -> None:
    deadline = time.monotonic() + 20
    while not [t for t in containers("WarmCls") if t["state"] == "ready"]:
        assert time.monotonic() < deadline, containers("WarmCls")
        time.sleep(0.05)
    [warm] = containers("WarmCls")
    assert snapshots.WarmCls().where.remote() == {"task_id": warm["task_id"], "size": 1}  # no cold start


def test_a_redeploy_invalidates_the_template(tmp_path: Path, process_platform: Platform) -> None:
    snapshot_v1.app.deploy()
    from skylift import Cls

    first = Cls.from_name("e2e-snapshot-redeploy", "Versioned")(workdir=str(tmp_path)).version.remote()
    snapshot_v2.app.deploy()
    second = Cls.from_name("e2e-snapshot-redeploy", "Versioned")(workdir=str(tmp_path)).version.remote()
    assert (first["version"], second["version"]) == (1, 2)
    assert markers(tmp_path, "snap") == sorted([first["template_pid"], second["template_pid"]])
    deadline = time.monotonic() + 20
    while _alive(first["template_pid"]):  # retired: it exits once its old container has drained
        assert time.monotonic() < deadline, "the old template is still running"
        time.sleep(0.05)
    assert _alive(second["template_pid"])
    call("app.stop", {"name": "e2e-snapshot-redeploy", "environment": "main"})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
