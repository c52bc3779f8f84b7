"""A real registry for the tests: Debian's `docker-registry` on a loopback port, and a minimal pusher.

    with local_registry(tmp) as url:                      # "127.0.0.1:PORT"
        push(url, "team/app", "1", [layer_tar(directory)], config={"Env": ["A=1"]})

The pusher speaks the v2 API like `docker push`: blobs by monolithic upload (POST, then PUT with the
digest), then the manifest. Layers are plain or gzip'd tars made here, so the tests control every
entry (whiteouts included).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TAR = "application/vnd.oci.image.layer.v1.tar"
TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.docker.container.image.v1+json"

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def registry_missing() -> str | None:
    if shutil.which("docker-registry") is None:
        return "docker-registry is missing (apt-get install docker-registry; scripts/setup does it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_registry(directory: Path) -> Iterator[str]:
    port = _free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    config.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {directory / "data"}
http:
  addr: 127.0.0.1:{port}
""")
    log = open(directory / "registry.log", "wb")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with _opener.open(f"http://{url}/v2/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start: " +
                                       (directory / "registry.log").read_text(errors="replace")) from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _request(method: str, url: str, data: bytes | Any = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    return _opener.open(request, timeout=120)


def push_blob(registry: str, repository: str, data: bytes | Path) -> str:
    if isinstance(data, Path):
        digest = hashlib.sha256()
        with open(data, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        size = data.stat().st_size
    else:
        digest = hashlib.sha256(data)
        size = len(data)
    name = f"sha256:{digest.hexdigest()}"
    try:
        _request("HEAD", f"http://{registry}/v2/{repository}/blobs/{name}").close()
        return name
    except urllib.error.HTTPError:
        pass
    with _request("POST", f"http://{registry}/v2/{repository}/blobs/uploads/") as response:
        location = response.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    separator = "&" if "?" in location else "?"
    body = open(data, "rb") if isinstance(data, Path) else data
    try:
        _request("PUT", f"{location}{separator}digest={name}", body,
                 {"Content-Type": "application/octet-stream", "Content-Length": str(size)}).close()
    finally:
        if not isinstance(body, bytes):
            body.close()
    return name


def push_manifest(registry: str, repository: str, reference: str, manifest: dict[str, Any], media_type: str) -> str:
    body = json.dumps(manifest).encode()
    _request("PUT", f"http://{registry}/v2/{repository}/manifests/{reference}", body,
             {"Content-Type": media_type}).close()
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def push(registry: str, repository: str, tag: str, layers: list[tuple[bytes | Path, str]],
         config: dict[str, Any] | None = None, architecture: str = "amd64") -> str:
    """Push an image: `layers` are (tar bytes or file, media type), lowest first. Returns the manifest digest."""
    entries = []
    for data, media_type in layers:
        size = data.stat().st_size if isinstance(data, Path) else len(data)
        entries.append({"mediaType": media_type, "size": size, "digest": push_blob(registry, repository, data)})
    image_config = json.dumps({"architecture": architecture, "os": "linux", "config": config or {},
                               "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": {"mediaType": CONFIG, "size": len(image_config),
                           "digest": push_blob(registry, repository, image_config)},
                "layers": entries}
    return push_manifest(registry, repository, tag, manifest, MANIFEST)


def push_index(registry: str, repository: str, tag: str, platforms: dict[str, str]) -> str:
    """An OCI index pointing at already pushed manifests ({"linux/amd64": digest, ...})."""
    manifests = []
    for platform, digest in platforms.items():
        os_name, architecture = platform.split("/")
        with _request("GET", f"http://{registry}/v2/{repository}/manifests/{digest}",
                      headers={"Accept": MANIFEST}) as response:
            size = len(response.read())
        manifests.append({"mediaType": MANIFEST, "digest": digest, "size": size,
                          "platform": {"os": os_name, "architecture": architecture}})
    return push_manifest(registry, repository, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                     "manifests": manifests}, OCI_INDEX)


def tar_of_directory(directory: Path, dest: Path) -> Path:
    """An uncompressed tar of a root filesystem (fast: `tar` itself)."""
    subprocess.run(["tar", "-C", str(directory), "--numeric-owner", "-cf", str(dest), "."], check=True)
    return dest


def tar_of_entries(entries: dict[str, str | bytes | None], *, gzip_it: bool = True) -> bytes:
    """A layer from {path: content}: str/bytes a file, None a directory, "->target" a symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in entries.items():
            info = tarfile.TarInfo(path)
            info.mtime = 1_700_000_000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str) and content.startswith("->"):
                info.type, info.linkname = tarfile.SYMTYPE, content[2:]
                tar.addfile(info)
            else:
                data = content.encode() if isinstance(content, str) else content
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return gzip.compress(raw, compresslevel=1, mtime=0) if gzip_it else raw
