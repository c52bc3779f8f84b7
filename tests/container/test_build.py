"""Build steps: a command on overlay(parent layers) whose changes, whiteouts included, become a layer."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from skylift.worker.container import run_build_step

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(240)]


def build(lowers: list[Path], upper: Path, script: str, network: bool = True, env: dict[str, str] | None = None,
          cwd: str = "/") -> tuple[int, list[str]]:
    lines: list[str] = []
    code = run_build_step(lowers, upper, ["sh", "-c", script], env or {}, cwd, lines.append, network=network)
    return code, lines


def assert_no_mount_stubs(layer: Path, base: Path) -> None:
    """Nothing bubblewrap mounted over may end up in the layer."""
    for path in ("run/skylift-build", "etc/pip.conf", "etc/xdg/pip", "etc/uv", "opt/wheels", "proc/self", "sys/fs"):
        if not (base / path).exists():
            assert not (layer / path).exists(), f"mount point {path} leaked into the layer"


def test_apt_install_makes_a_layer_that_runs(debian_base, tmp_path, run_sandbox):
    layer = tmp_path / "apt"
    code, lines = build([debian_base], layer,
                        "apt-get update -q && apt-get install -y -q --no-install-recommends jq")
    assert code == 0, "\n".join(lines[-20:])
    assert any("Setting up jq" in line for line in lines)
    assert (layer / "usr/bin/jq").exists() and not (debian_base / "usr/bin/jq").exists()
    assert_no_mount_stubs(layer, debian_base)
    result = run_sandbox(["sh", "-c", "echo '{\"a\": 41}' | jq '.a + 1'"], layers=[debian_base, layer])
    assert result.stdout == "42\n", result.stderr


def test_pip_install_in_a_venv_through_the_hosts_tls_settings(debian_base, tmp_path, run_sandbox):
    layer = tmp_path / "pip"
    code, lines = build([debian_base], layer,
                        "python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir six")
    assert code == 0, "\n".join(lines[-20:])
    assert any("Successfully installed six" in line for line in lines)
    assert_no_mount_stubs(layer, debian_base)
    result = run_sandbox(["/opt/venv/bin/python", "-c", "import six; print(six.__name__)"],
                         layers=[debian_base, layer])
    assert result.stdout == "six\n", result.stderr


SHOW_SETTINGS = """
import json, os
print(json.dumps({
    "ca": os.path.getsize(os.environ["SSL_CERT_FILE"]) > 0,
    "pip_cert": os.environ.get("PIP_CERT"),
    "resolv": any(line.startswith("nameserver") for line in open("/etc/resolv.conf")),
    "apt_config": open(os.environ["APT_CONFIG"]).read(),
    "frontend": os.environ.get("DEBIAN_FRONTEND"),
    "mine": os.environ.get("MINE"),
}))
"""


def test_host_package_settings_are_visible_during_the_build(debian_base, tmp_path):
    lines: list[str] = []
    code = run_build_step([debian_base], tmp_path / "layer", ["python3", "-c", SHOW_SETTINGS],
                          {"MINE": "set by the step"}, "/", lines.append)
    assert code == 0, lines
    seen = json.loads(lines[-1])
    assert seen["ca"] is True and seen["resolv"] is True
    assert seen["pip_cert"] == "/run/skylift-build/ca-certificates.crt"
    assert "Acquire::https::CaInfo" in seen["apt_config"]
    assert seen["frontend"] == "noninteractive" and seen["mine"] == "set by the step"


def test_deletions_are_kept_as_whiteouts(debian_base, tmp_path, run_sandbox):
    layer = tmp_path / "rm"
    code, lines = build([debian_base], layer,
                        "rm /etc/debian_version && rm -r /usr/share/doc/apt && echo new > /etc/new")
    assert code == 0, lines
    whiteout = os.lstat(layer / "etc/debian_version")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0  # overlayfs's whiteout: a 0/0 char device
    assert (layer / "etc/new").read_text() == "new\n"
    result = run_sandbox(["sh", "-c", "ls /etc/debian_version /usr/share/doc/apt 2>&1; cat /etc/new"],
                         layers=[debian_base, layer])
    assert result.stdout.count("No such file") == 2 and result.stdout.endswith("new\n")


def test_layers_stack(debian_base, tmp_path, run_sandbox):
    one, two = tmp_path / "one", tmp_path / "two"
    assert build([debian_base], one, "mkdir -p /app && echo 1 > /app/a && echo 1 > /app/b")[0] == 0
    assert build([debian_base, one], two, "echo 2 > b && rm a", cwd="/app")[0] == 0
    result = run_sandbox(["sh", "-c", "ls /app; cat /app/b"], layers=[debian_base, one, two])
    assert result.stdout == "b\n2\n"


def test_output_streams_line_by_line_and_exit_code_is_returned(debian_base, tmp_path):
    code, lines = build([debian_base], tmp_path / "layer", "echo one; echo two >&2; sleep 0.1; echo three; exit 3")
    assert code == 3
    assert lines == ["one", "two", "three"]


def test_build_without_network_has_only_loopback(debian_base, tmp_path):
    code, lines = build([debian_base], tmp_path / "layer",
                        "python3 -c 'import socket; print([n for _, n in socket.if_nameindex()])'", network=False)
    assert code == 0 and lines == ["['lo']"]
