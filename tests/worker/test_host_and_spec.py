"""Host resources, GPU naming and allocation, and the environment a container starts with."""

from __future__ import annotations

from pathlib import Path

import pytest

from skylift._protocol import api
from skylift.worker import host
from skylift.worker.images import BuiltImage
from skylift.worker.task_spec import container_spec, task_mounts

NVIDIA_SMI = """0, NVIDIA H100 80GB HBM3, 81559
1, NVIDIA H100 80GB HBM3, 81559
2, NVIDIA A100-SXM4-80GB, 81920
3, NVIDIA A100-PCIE-40GB, 40960
4, Tesla T4, 15360
5, NVIDIA L40S, 46068
6, NVIDIA L4, 23034
7, NVIDIA A10G, 23028
"""


def test_nvidia_smi_names_map_to_the_sdks_gpu_types() -> None:
    gpus = host.detect_gpus(lambda argv: NVIDIA_SMI)
    assert [g.type for g in gpus] == ["H100", "H100", "A100-80GB", "A100-40GB", "T4", "L40S", "L4", "A10"]
    assert host.resources(gpus)["gpus"] == {"H100": 2, "A100-80GB": 1, "A100-40GB": 1, "T4": 1, "L40S": 1,
                                            "L4": 1, "A10": 1}
    assert host.gpu_type("NVIDIA H200", 143771) == "H200"
    assert host.gpu_type("NVIDIA GeForce RTX 4090", 24564) == "GEFORCE-RTX-4090"


def test_no_nvidia_smi_means_no_gpus() -> None:
    def missing(argv: list[str]) -> str:
        raise FileNotFoundError("nvidia-smi")

    assert host.detect_gpus(missing) == []
    r = host.resources([])
    assert r["gpus"] == {} and r["cpu"] >= 1 and r["memory_mb"] > 0


def test_gpu_allocation_by_type_and_count() -> None:
    allocator = host.GpuAllocator(host.detect_gpus(lambda argv: NVIDIA_SMI))
    assert allocator.allocate("ta-1", {"type": "H100", "count": 2, "fallbacks": []}) == [0, 1]
    with pytest.raises(RuntimeError, match="needs 1 x H100 GPU but only 0"):
        allocator.allocate("ta-2", "H100")
    assert allocator.allocate("ta-3", "A100:2") == [2, 3]  # "A100" takes either size
    assert allocator.allocate("ta-4", None) == []
    allocator.release("ta-1")
    assert allocator.allocate("ta-5", "h100") == [0]


def _image(tmp_path: Path, workdir: str | None = None) -> BuiltImage:
    return BuiltImage("im-1", "abc", tmp_path / "layer", env={"FROM_IMAGE": "1", "SHARED": "image"},
                      workdir=workdir)


def _task(**extra: object) -> dict[str, object]:
    return {"task_id": "ta-1", "token": "tok", "server_url": "unix:///cp.sock", "env": {"SHARED": "task"},
            "resources": {"cpu": 1}, "mounts": [], "definition": {"mounts": []}, **extra}


def test_container_environment_is_built_from_scratch(tmp_path: Path) -> None:
    host_env = {"HOME": "/home/u", "PATH": "/host/bin", "SKYLIFT_TOKEN": "admin-secret", "SSL_CERT_FILE": "/ca.pem",
                "VIRTUAL_ENV": "/worker/venv", "PYTHONPATH": "/worker/src"}
    spec = container_spec(_task(), _image(tmp_path), source_dir=tmp_path / "m" / "root", mount_root=tmp_path / "m",
                          scratch=tmp_path / "scratch", gpu_indices=[], host_has_gpus=True, host_env=host_env)
    env = spec.env
    assert spec.argv == [str(tmp_path / "layer" / "bin" / "python"), "-m", "skylift._runtime"]
    assert "SKYLIFT_TOKEN" not in env and env["VIRTUAL_ENV"] == str(tmp_path / "layer")
    assert env["PATH"].startswith(f"{tmp_path / 'layer' / 'bin'}:") and "/host/bin" not in env["PATH"]
    assert env["PYTHONPATH"] == str(tmp_path / "m" / "root")
    assert env["SHARED"] == "task" and env["FROM_IMAGE"] == "1"
    assert env[api.ENV_TASK_ID] == "ta-1" and env[api.ENV_TASK_TOKEN] == "tok"
    assert env[api.ENV_SERVER_URL] == "unix:///cp.sock" and env[api.ENV_IS_REMOTE] == "1"
    assert env["PYTHONUNBUFFERED"] == "1" and env["SSL_CERT_FILE"] == "/ca.pem" and env["HOME"] == "/home/u"
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # a CPU task on a GPU machine sees no GPU
    assert spec.cwd == tmp_path / "m" / "root"


def test_image_workdir_wins_and_gpus_are_visible(tmp_path: Path) -> None:
    spec = container_spec(_task(), _image(tmp_path, "/app"), source_dir=None, mount_root=None,
                          scratch=tmp_path / "scratch", gpu_indices=[2, 3], host_has_gpus=True, host_env={})
    assert spec.cwd == tmp_path / "layer" / "fs" / "app"
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "2,3"
    assert spec.env["HOME"] == str(tmp_path / "scratch")
    assert "PYTHONPATH" not in spec.env


def test_task_and_definition_mounts_are_merged_once() -> None:
    a = {"remote_path": "/root", "files": [{"path": "a.py", "sha256": "1" * 64, "mode": 420}]}
    b = {"remote_path": "/data", "files": [{"path": "x", "sha256": "2" * 64, "mode": 420}]}
    assert task_mounts({"mounts": [a], "definition": {"mounts": [dict(a), b]}}) == [a, b]
