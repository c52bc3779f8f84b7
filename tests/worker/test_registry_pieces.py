"""Pure pieces of registry pulls and Dockerfile builds: references, challenges, parsing, layer extraction."""

from __future__ import annotations

import doctest
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

import skylift.worker.dockerfile
import skylift.worker.registry
from skylift.worker.dockerfile import DockerfileError, assignments, expand, parse, split_flags, words
from skylift.worker.oci_layers import LayerError, extract
from skylift.worker.registry import (
    DigestReader,
    RegistryError,
    _parse_challenge,
    docker_config_credentials,
    parse_reference,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("python", ("registry-1.docker.io", "library/python", "latest", None)),
    ("python:3.12-slim", ("registry-1.docker.io", "library/python", "3.12-slim", None)),
    ("docker.io/nvidia/cuda:12.4.1-base", ("registry-1.docker.io", "nvidia/cuda", "12.4.1-base", None)),
    ("ghcr.io/astral-sh/uv:0.5", ("ghcr.io", "astral-sh/uv", "0.5", None)),
    ("localhost:5000/app", ("localhost:5000", "app", "latest", None)),
    ("127.0.0.1:5000/team/app:v1", ("127.0.0.1:5000", "team/app", "v1", None)),
    ("nvcr.io/nvidia/pytorch@sha256:" + "ab" * 32, ("nvcr.io", "nvidia/pytorch", None, "sha256:" + "ab" * 32)),
])
def test_references(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected


@pytest.mark.parametrize("text", ["Python:3", "app@sha256:short", "a//b"])
def test_bad_references(text: str) -> None:
    with pytest.raises(RegistryError, match="image reference"):
        parse_reference(text)


def test_challenge_and_digest_checks() -> None:
    scheme, params = _parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"')
    assert scheme == "bearer" and params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"}
    good = DigestReader(io.BytesIO(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert good.read() == b"abc"
    good.verify()
    bad = DigestReader(io.BytesIO(b"abd"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    with pytest.raises(RegistryError, match="corrupted"):
        bad.verify()


def test_docker_login_credentials(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"auths": {"ghcr.io": {"auth": "dTpwOnc="}}}')  # u:p:w
    assert docker_config_credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path)}) == ("u", "p:w")
    assert docker_config_credentials("quay.io", {"DOCKER_CONFIG": str(tmp_path)}) is None


def test_dockerfile_parsing() -> None:
    text = "# syntax=docker/dockerfile:1\nARG V=1\nFROM base:${V}\n\nRUN apt-get update && \\\n  # a comment\n" \
           "  apt-get install -y git\nENV A=1 B=\"two words\"\nENV C three words\nCOPY --chown=1:1 a b /dest/\n"
    found = parse(text)
    assert [i.keyword for i in found] == ["ARG", "FROM", "RUN", "ENV", "ENV", "COPY"]
    assert found[2].text == "apt-get update && apt-get install -y git" and found[2].line == 5
    assert assignments(found[3].text, 7, "ENV") == [("A", "1"), ("B", "two words")]
    assert assignments(found[4].text, 8, "ENV") == [("C", "three words")]
    assert assignments("V=1 W", 2, "ARG") == [("V", "1"), ("W", "")]
    assert split_flags(words(found[5].text, 9)) == ({"chown": "1:1"}, ["a", "b", "/dest/"])
    assert words('["python", "-c", "print(1)"]', 1) == ["python", "-c", "print(1)"]
    assert expand("${V}-$W-${X:-x}-${V:+y}", {"V": "1"}) == "1--x-y"
    with pytest.raises(DockerfileError, match="line 1"):
        parse("RUN echo \\")
    with pytest.raises(DockerfileError, match="not an instruction"):
        parse("FROM x\n=oops\n")


def test_docstring_examples() -> None:
    assert doctest.testmod(skylift.worker.dockerfile).failed == 0
    assert doctest.testmod(skylift.worker.registry).failed == 0


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def _entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.uid, info.gid = kind, linkname, 0o644, os.getuid(), os.getgid()
    return info


def test_extraction_refuses_to_leave_the_layer(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match=r"leaves the layer"):
        extract(_tar((_entry("../escape"), b"x")), tmp_path / "a")
    # A symlink in this layer can't be used to write elsewhere.
    (tmp_path / "b").mkdir()
    with pytest.raises(LayerError, match="not a directory in this layer"):
        extract(_tar((_entry("etc", tarfile.SYMTYPE, str(tmp_path / "outside")), None),
                     (_entry("etc/passwd"), b"x")), tmp_path / "b")
    assert not (tmp_path / "outside").exists()


def test_extraction_of_files_links_and_replacements(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    extract(_tar((_entry("./usr/bin/tool"), b"v1"), (_entry("usr/bin/tool"), b"v2"),
                 (_entry("usr/bin/alias", tarfile.SYMTYPE, "tool"), None),
                 (_entry("usr/bin/hard", tarfile.LNKTYPE, "usr/bin/tool"), None)), layer)
    assert (layer / "usr/bin/tool").read_bytes() == b"v2"
    assert os.readlink(layer / "usr/bin/alias") == "tool"
    assert os.stat(layer / "usr/bin/hard").st_ino == os.stat(layer / "usr/bin/tool").st_ino


@pytest.mark.root
def test_whiteouts_become_overlayfs_whiteouts(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("whiteouts are character devices and trusted.* attributes: root only")
    layer = tmp_path / "layer"
    layer.mkdir()
    extract(_tar((_entry("etc/.wh.motd"), b""), (_entry("opt/app/.wh..wh..opq"), b""), (_entry("opt/app/new"), b"n")),
            layer)
    motd = os.lstat(layer / "etc/motd")
    assert stat.S_ISCHR(motd.st_mode) and motd.st_rdev == os.makedev(0, 0)
    assert os.getxattr(layer / "opt/app", "trusted.overlay.opaque") == b"y"
    assert (layer / "opt/app/new").read_bytes() == b"n"
