"""The Debian base: python versions, caching, one build for concurrent callers, nothing left by failures.

The cache and locking tests use a stand-in for debootstrap, so they run anywhere in a second.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from skylift.worker.container import BaseImageError, UnsupportedPythonVersion, build_debian_base, debian, host


@pytest.mark.timeout(10)
def test_unavailable_python_versions_name_what_is_available(tmp_path):
    for wanted in ("3.12", "3.10", "2.7"):
        with pytest.raises(UnsupportedPythonVersion, match=r"ships Python 3\.11 only.*python_version='3\.11'"):
            build_debian_base(tmp_path, wanted, print)
    with pytest.raises(UnsupportedPythonVersion, match="not a version"):
        build_debian_base(tmp_path, "latest", print)
    assert debian.python_series("3.11.2") == debian.python_series(None) == "3.11"
    assert list(tmp_path.iterdir()) == []


# Stands in for debootstrap: records the call, makes a root with python3.11, exits with {code}.
FAKE_DEBOOTSTRAP = """#!/bin/sh
for arg; do target="$mirror_prev"; mirror_prev="$arg"; done
echo call >> {calls}
echo "I: Retrieving InRelease"
mkdir -p "$target/usr/bin" "$target/etc/apt" "$target/var/cache/apt/archives"
touch "$target/usr/bin/python3.11"
sleep 0.3
echo "I: Base system installed successfully."
exit {code}
"""


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int = 0) -> Path:
    calls = tmp_path / "calls"
    script = tmp_path / "debootstrap"
    script.write_text(FAKE_DEBOOTSTRAP.format(calls=calls, code=code))
    script.chmod(0o755)
    real_tool = host.tool
    monkeypatch.setattr(host, "tool", lambda name: str(script) if name == "debootstrap" else real_tool(name))
    monkeypatch.setattr(debian, "HOST_CA_DIR", tmp_path / "no-cas")
    return calls


@pytest.mark.timeout(30)
def test_concurrent_callers_build_once(tmp_path, monkeypatch):
    calls = _fake(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    results: list[Path] = []
    logs: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(build_debian_base(cache, "3.11", logs.append)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls.read_text().count("call") == 1
    assert len(set(results)) == 1 and len(results) == 3
    base = results[0]
    meta = json.loads((base / debian.COMPLETE).read_text())
    assert meta["python"] == "3.11" and meta["suite"] == "bookworm"
    assert "bookworm-security" in (base / "etc/apt/sources.list").read_text()
    assert any("debootstrap: I: Retrieving" in line for line in logs)
    start = time.monotonic()
    assert build_debian_base(cache, "3.11", logs.append) == base
    assert time.monotonic() - start < 0.5
    assert sorted(p.name for p in cache.iterdir()) == sorted([base.name, f".{base.name}.lock"])


@pytest.mark.timeout(30)
def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    _fake(tmp_path, monkeypatch, code=2)
    cache = tmp_path / "cache"
    with pytest.raises(BaseImageError, match=r"(?s)debootstrap exited with code 2.*Base system installed"):
        build_debian_base(cache, "3.11", lambda line: None)
    assert [p.name for p in cache.iterdir()] == [f".debian-bookworm-py3.11-{host.arch()}.lock"]


@pytest.mark.root
@pytest.mark.usefixtures("container_host")
@pytest.mark.timeout(180)
def test_the_real_base_has_python_and_the_hosts_cas(debian_base):
    assert (debian_base / "usr/bin/python3.11").exists()
    assert (debian_base / "usr/lib/python3.11/venv").is_dir()
    meta = json.loads((debian_base / debian.COMPLETE).read_text())
    assert meta["python"] == "3.11"
    host_cas = sorted(debian.HOST_CA_DIR.glob("*.crt")) if debian.HOST_CA_DIR.is_dir() else []
    bundle = (debian_base / "etc/ssl/certs/ca-certificates.crt").read_text()
    for cert in host_cas:
        assert (debian_base / "usr/local/share/ca-certificates" / cert.name).exists()
        body = cert.read_text().strip().splitlines()[1]
        assert body in bundle
    assert not list((debian_base / "var/cache/apt/archives").glob("*.deb"))
    start = time.monotonic()
    assert build_debian_base(debian_base.parent, "3.11", print) == debian_base
    assert time.monotonic() - start < 0.5
