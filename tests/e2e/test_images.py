"""Images from registries and Dockerfiles, against a real registry started here (container runtime, root).

A registry (`docker-registry`) on a loopback port holds a test image pushed by `registry_helper`: the
cached Debian base as one plain tar layer, then small gzip'd layers with whiteouts and an opaque
directory, under a tag that is an OCI index (linux/amd64 and linux/arm64). The worker pulls it, as
it would from Docker Hub.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from container_fixture import container_platform_fixture  # noqa: F401 - the container_platform fixture
from registry_helper import TAR, TAR_GZIP, local_registry, push, push_index, registry_missing, tar_of_directory
from registry_helper import tar_of_entries as entries

from skylift.exception import ExecutionError

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
REPO = "skylift-test/debian"


def _unavailable() -> str | None:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs Linux and root (the container runtime)"
    from skylift.worker.container import available

    ok, why = available()
    return None if ok else f"the container runtime is unavailable here: {why}"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = _unavailable() or registry_missing()
    if reason:
        pytest.skip(reason)
    from skylift.worker.container import build_debian_base
    from skylift.worker.container_images import base_cache_dir

    base = build_debian_base(base_cache_dir(), "3.11", print)
    work = tmp_path_factory.mktemp("registry")
    with local_registry(work / "registry") as url:
        rootfs = tar_of_directory(base, work / "base.tar")
        files = entries({"opt/app": None, "opt/app/a.txt": "a", "opt/app/b.txt": "b", "etc/removed-me": "x",
                         "opt/old": None, "opt/old/x.txt": "x", "usr/local/bin/hello": "->/bin/echo"})
        deletions = entries({"opt/app/.wh.a.txt": "", "opt/old/.wh..wh..opq": "", "opt/old/y.txt": "y",
                             "etc/.wh.removed-me": ""})
        config = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hi"], "WorkingDir": "/opt/app"}
        amd64 = push(url, REPO, "amd64", [(rootfs, TAR), (files, TAR_GZIP), (deletions, TAR_GZIP)], config)
        arm64 = push(url, REPO, "arm64", [(files, TAR_GZIP)], architecture="arm64")
        push_index(url, REPO, "multi", {"linux/arm64": arm64, "linux/amd64": amd64})
        no_python = entries({"usr/bin/.wh.python3": "", "usr/bin/.wh.python3.11": ""})
        push(url, REPO, "no-python", [(rootfs, TAR), (no_python, TAR_GZIP)], config)
        yield url


class Store:
    def __init__(self, root: Path) -> None:
        from skylift.worker.blobs import BlobCache, DictBlobSource
        from skylift.worker.container_images import ContainerImageStore
        from skylift.worker.images import prepare_runtime_site

        self.blobs = DictBlobSource()
        self.store = ContainerImageStore(root / "images", BlobCache(root / "blobs", self.blobs),
                                         runtime_site=prepare_runtime_site(root / "site"))
        self.root = root

    def build(self, *layers: dict[str, Any]) -> Any:
        return asyncio.run(self.store.build("im-test", {"layers": list(layers)}, lambda line: None))

    def run(self, image: Any, script: str) -> str:
        from skylift.worker.container import Sandbox, SandboxSpec

        async def go() -> str:
            spec = SandboxSpec(layers=image.layers, command=[image.python_path or "/bin/sh", "-c", script],
                               task_id="ta-reg", state_dir=self.root / f"run-{time.monotonic_ns()}", env=image.env,
                               cwd=image.workdir or "/", block_network=True)
            sandbox = await Sandbox.start(spec)
            out, err = await asyncio.gather(sandbox.stdout.read(), sandbox.stderr.read())
            assert await sandbox.wait() == 0, err.decode()
            return out.decode()

        return asyncio.run(go())


def registry_layer(tag: str, **args: Any) -> dict[str, Any]:
    return {"step": "from_registry", "args": {"tag": tag, "setup_dockerfile_commands": [], "add_python": None, **args},
            "files": [], "force_build": False}


def test_pull_resolves_the_index_and_applies_whiteouts(registry: str, tmp_path: Path) -> None:
    store = Store(tmp_path)
    image = store.build(registry_layer(f"{registry}/{REPO}:multi"))
    assert image.python_path == "/usr/bin/python3" and not image.python_is_venv
    assert image.env["GREETING"] == "hi" and image.workdir == "/opt/app"
    out = store.run(image, "import os, subprocess; print(sorted(os.listdir('.')), sorted(os.listdir('/opt/old')), "
                           "os.path.exists('/etc/removed-me'), os.getcwd(), os.environ['GREETING'], "
                           "subprocess.run(['hello', 'linked'], capture_output=True, text=True).stdout.strip())")
    assert out.strip() == "['b.txt'] ['y.txt'] False /opt/app hi linked"
    # Layers are shared: a second image of the same tag pulls nothing.
    pulled = sorted(p.name for p in (tmp_path / "images" / "oci").iterdir() if not p.name.startswith("."))
    assert len(pulled) == 3
    store.build(registry_layer(f"{registry}/{REPO}:amd64"), {"step": "env", "args": {"vars": {"B": "2"}},
                                                             "files": [], "force_build": False})
    assert sorted(p.name for p in (tmp_path / "images" / "oci").iterdir() if not p.name.startswith(".")) == pulled


def test_an_image_without_python_says_so(registry: str, tmp_path: Path) -> None:
    from skylift.worker.container_task import ContainerTaskError, container_spec

    image = Store(tmp_path).build(registry_layer(f"{registry}/{REPO}:no-python"))
    assert image.python_path is None
    task = {"task_id": "ta-1", "token": "t", "server_url": "tcp://127.0.0.1:1", "definition": {}}
    with pytest.raises(ContainerTaskError, match="has no Python"):
        container_spec(task, image, mount_root=None, scratch=tmp_path)


def test_errors_name_the_image_and_the_registry(registry: str, tmp_path: Path) -> None:
    from skylift.worker.images import BuildError

    with pytest.raises(BuildError, match=r"skylift-test/nothing:1 was not found in the registry 127\.0\.0\.1"):
        Store(tmp_path).build(registry_layer(f"{registry}/skylift-test/nothing:1"))
    with pytest.raises(BuildError, match="no linux/amd64 image"):
        Store(tmp_path).build(registry_layer(f"{registry}/{REPO}@" + _index_digest(registry, "arm-only")))


def _index_digest(registry: str, tag: str) -> str:
    arm64 = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(urllib.request.Request(
        f"http://{registry}/v2/{REPO}/manifests/arm64",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}))
    digest = arm64.headers["Docker-Content-Digest"]
    return push_index(registry, REPO, tag, {"linux/arm64": digest})


class TokenFront(http.server.ThreadingHTTPServer):
    """A registry front that wants a Bearer token, issued by /token for Basic auth u:p (like Docker Hub)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _FrontHandler)
        self.upstream = upstream
        self.token_requests: list[str] = []


class _FrontHandler(http.server.BaseHTTPRequestHandler):
    server: TokenFront

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        host = f"127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/token"):
            self.server.token_requests.append(self.path)
            if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"u:p").decode():
                self.send_response(401)
                self.end_headers()
                return
            body = json.dumps({"token": "good"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.headers.get("Authorization") != "Bearer good":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="http://{host}/token",service="test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        request = urllib.request.Request(f"http://{self.server.upstream}{self.path}",
                                         headers={"Accept": self.headers.get("Accept", "*/*")})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as response:
            body = response.read()
            self.send_response(response.status)
            for name in ("Content-Type", "Docker-Content-Digest"):
                if response.headers.get(name):
                    self.send_header(name, response.headers[name])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_bearer_token_auth(registry: str, tmp_path: Path) -> None:
    from skylift.worker.oci_layers import pull
    from skylift.worker.registry import RegistryError

    front = TokenFront(registry)
    thread = threading.Thread(target=front.serve_forever, daemon=True)
    thread.start()
    try:
        tag = f"127.0.0.1:{front.server_address[1]}/{REPO}:multi"
        with pytest.raises(RegistryError, match="401"):
            pull(tag, tmp_path / "oci", None, print, environ={"HOME": str(tmp_path)})
        image = pull(tag, tmp_path / "oci", ("u", "p"), print, environ={"HOME": str(tmp_path)})
        assert len(image.layers) == 3 and image.env["GREETING"] == "hi"
        assert any(f"scope=repository%3A{REPO.replace('/', '%2F')}%3Apull" in r for r in front.token_requests)
    finally:
        front.shutdown()
        front.server_close()


# -- through the public API -------------------------------------------------------------------------

DOCKERFILE = """
ARG BASE={registry}/{repo}
FROM ${{BASE}}:multi
ARG WHO=nobody
ENV GREETING="hello docker"
WORKDIR /srv
COPY app.conf ./
RUN echo "built by $WHO" > /built.txt \\
    && test -d /opt/app
RUN ["/bin/sh", "-c", "test -f /srv/app.conf"]
CMD ["python3"]
"""


@pytest.fixture(scope="module")
def images_app(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    front = TokenFront(registry)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    os.environ["SKYLIFT_TEST_PRIVATE_REGISTRY"] = f"127.0.0.1:{front.server_address[1]}"
    context = tmp_path_factory.mktemp("context")
    (context / "app.conf").write_text("conf\n")
    (context / "Dockerfile").write_text(DOCKERFILE.format(registry=registry, repo=REPO))
    (context / "Dockerfile.user").write_text(f"FROM {registry}/{REPO}:multi\nUSER nobody\n")
    os.environ["SKYLIFT_TEST_REGISTRY"], os.environ["SKYLIFT_TEST_DOCKER_CONTEXT"] = registry, str(context)
    try:
        from apps import images

        yield images
    finally:
        for name in ("SKYLIFT_TEST_REGISTRY", "SKYLIFT_TEST_DOCKER_CONTEXT", "SKYLIFT_TEST_PRIVATE_REGISTRY"):
            os.environ.pop(name, None)
        front.shutdown()
        front.server_close()


def test_functions_run_in_a_registry_image_and_a_dockerfile_image(images_app: Any, container_platform: Any) -> None:
    with images_app.app.run():
        first = images_app.in_registry_image.remote()
        second = images_app.in_dockerfile_image.remote()
    assert first["exe"] == "/usr/bin/python3" and first["six"] == "six" and first["debian"].startswith("12.")
    assert first["greeting"] == "hi" and first["cwd"] == "/opt/app" and first["files"] == ["b.txt"]
    assert first["hello"] == "x"
    assert second["greeting"] == "hello docker" and second["cwd"] == "/srv" and second["files"] == ["app.conf"]
    assert second["built"] == "built by skylift"


def test_unsupported_dockerfile_instructions_are_clear_errors(images_app: Any, container_platform: Any) -> None:
    with pytest.raises(ExecutionError, match="line 2: the Dockerfile instruction USER is not supported"), \
            images_app.broken.run():
        images_app.never.remote()


def test_build_steps_get_their_secrets_and_registries_theirs(images_app: Any, container_platform: Any) -> None:
    with images_app.with_secrets.run():
        assert images_app.read_token.remote() == "token=s3cret"
