"""Which runtime a worker picks, and how a TaskSpec becomes a container runtime's ContainerSpec (pure parts)."""

from __future__ import annotations

import doctest
import socket
from pathlib import Path

import pytest

import skylift.worker.container_task
import skylift.worker.runtimes
from skylift.worker.container_images import LayeredImage
from skylift.worker.container_limits import Host
from skylift.worker.container_task import ContainerTaskError, container_spec, control_plane_access
from skylift.worker.runtimes import Choice, RuntimeUnavailable, choose

YES = (True, "bubblewrap 0.8.0 + overlayfs + cgroup v1")
NO = (False, "containers need root (the worker runs as uid 1000)")


@pytest.mark.parametrize(("requested", "available", "gpus", "expected"), [
    (None, YES, False, "container"),
    ("auto", YES, False, "container"),
    (" Container ", YES, False, "container"),
    (None, NO, False, "process"),
    (None, YES, True, "process"),
    ("container", YES, True, "container"),
    ("process", YES, False, "process"),
    ("process", NO, False, "process"),
])
def test_choice(requested: str | None, available: tuple[bool, str], gpus: bool, expected: str) -> None:
    assert choose(requested, available, gpus).name == expected


def test_auto_says_why_it_fell_back() -> None:
    assert choose(None, NO, False) == Choice("process", f"the container runtime is unavailable: {NO[1]}")


def test_an_explicit_container_runtime_that_cant_run_is_an_error_naming_why() -> None:
    with pytest.raises(RuntimeUnavailable, match=r"SKYLIFT_RUNTIME=container.*containers need root.*=process"):
        choose("container", NO, False)
    with pytest.raises(RuntimeUnavailable, match="'docker' is not a runtime"):
        choose("docker", YES, False)


HOST = Host(cpus=32, memory_mb=65536)


@pytest.mark.parametrize(("resources", "expected"), [
    # nothing asked: Modal's default request, with limits that protect the host (container_limits.py)
    ({}, (16.125, 8192)),
    ({"cpu": None, "cpu_limit": None, "memory": None, "memory_limit": None}, (16.125, 8192)),
    ({"cpu": 0.25, "memory": 64}, (0.25, 64)),
    ({"cpu": 1.0, "cpu_limit": 4.0, "memory": 512, "memory_limit": 2048}, (4.0, 2048)),
])
def test_limits(resources: dict[str, float | int | None], expected: tuple[float, int]) -> None:
    task = {**TASK, "definition": {"resources": resources}}
    spec = container_spec(task, _image(), mount_root=None, scratch=Path("/scratch"), host=HOST)
    assert (spec.resources["cpu_limit"], spec.resources["memory_limit"]) == expected


def test_a_dedicated_socket_directory_is_bound_whole(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "socket").mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(home / "socket" / "server.sock"))
    (home / "server.sock").symlink_to("socket/server.sock")
    (home / "token").write_text("secret")
    try:
        url, binds = control_plane_access(f"unix://{home}/server.sock")
        assert url == "unix:///run/skylift/server.sock"
        assert binds == [(home / "socket", "/run/skylift", True)]
        # A socket beside other files: only the socket is shown, never the token.
        (home / "socket" / "notes.txt").write_text("x")
        url, binds = control_plane_access(f"unix://{home}/server.sock")
        assert binds == [(home / "socket" / "server.sock", "/run/skylift/server.sock", True)]
    finally:
        server.close()
    assert control_plane_access("tcp://10.0.0.1:7410") == ("tcp://10.0.0.1:7410", [])


def _image(**over: object) -> LayeredImage:
    fields: dict[str, object] = dict(image_id="im-1", layer_id="abc", root=Path("/images/abc"),
                                     env={"PATH": "/opt/skylift-venv/bin:/usr/bin", "PYTHONPATH": "/opt/lib"},
                                     workdir=None, python_version="3.11.2", layers=[Path("/base"), Path("/venv")],
                                     python_path="/opt/skylift-venv/bin/python", python_is_venv=True)
    fields.update(over)
    return LayeredImage(**fields)  # type: ignore[arg-type]


TASK = {"task_id": "ta-1", "token": "tok", "server_url": "tcp://10.1.2.3:7410", "env": {"SECRET": "s3"},
        "resources": {"cpu": 0.125, "memory": 128},
        "definition": {"resources": {"cpu": 0.5, "memory": 64}, "block_network": True}}


def test_container_spec_speaks_in_container_paths(tmp_path: Path) -> None:
    spec = container_spec(TASK, _image(), mount_root=tmp_path / "mounts", scratch=tmp_path / "scratch",
                          host_env={"HTTPS_PROXY": "http://proxy:3128", "SSL_CERT_FILE": "/host/ca.pem",
                                    "SKYLIFT_TOKEN": "admin", "VIRTUAL_ENV": "/work/.venv"})
    assert spec.argv == ["/opt/skylift-venv/bin/python", "-m", "skylift._runtime"]
    assert spec.cwd == Path("/root")
    assert spec.layers == [Path("/base"), Path("/venv"), tmp_path / "mounts"]
    env = spec.env
    assert env["PYTHONPATH"] == "/root:/opt/lib:/opt/skylift-runtime"
    assert env["SKYLIFT_SERVER_URL"] == "tcp://10.1.2.3:7410" and env["SKYLIFT_TASK_TOKEN"] == "tok"
    assert env["SECRET"] == "s3" and env["HTTPS_PROXY"] == "http://proxy:3128" and env["MODAL_IS_REMOTE"] == "1"
    assert "SKYLIFT_TOKEN" not in env and "SSL_CERT_FILE" not in env and "VIRTUAL_ENV" not in env
    assert spec.resources["cpu_limit"] == 0.5 and spec.resources["memory_limit"] == 64
    assert spec.resources["cpu_request"] == 0.5 and spec.resources["ephemeral_disk_mb"] == 10240
    assert env["SKYLIFT_EPHEMERAL_DISK_MB"] == "10240"
    assert spec.block_network is True
    assert {c for _, c, _ in spec.binds} >= {"/opt/skylift-runtime/skylift", "/opt/skylift-runtime/msgpack"}
    assert all(read_only for _, _, read_only in spec.binds)


def test_workdir_and_images_without_python(tmp_path: Path) -> None:
    spec = container_spec(TASK, _image(workdir="/app"), mount_root=None, scratch=tmp_path)
    assert spec.cwd == Path("/app") and spec.layers == [Path("/base"), Path("/venv")]
    with pytest.raises(ContainerTaskError, match="has no Python"):
        container_spec(TASK, _image(python_path=None), mount_root=None, scratch=tmp_path)


def test_docstring_examples() -> None:
    assert doctest.testmod(skylift.worker.runtimes).failed == 0
    assert doctest.testmod(skylift.worker.container_task).failed == 0
