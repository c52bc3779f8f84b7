"""The process runtime's image builder, for real: venvs, uv installs, commands, files, the cache."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from skylift._hashing import layer_chain_ids
from skylift.worker.blobs import BlobCache, DictBlobSource
from skylift.worker.images import BuildError, BuiltImage, ImageStore, prepare_runtime_site

SERIES = "{}.{}".format(*sys.version_info[:2])
BASE = {"step": "debian_slim", "args": {"python_version": SERIES}, "files": [], "force_build": False}


def layer(step: str, files: list[dict[str, Any]] | None = None, force_build: bool = False,
          **args: Any) -> dict[str, Any]:
    return {"step": step, "args": args, "files": files or [], "force_build": force_build}


class Builder:
    def __init__(self, root: Path) -> None:
        self.blobs = DictBlobSource()
        self.root = root
        self.store = ImageStore(root / "images", BlobCache(root / "blobs-cache", self.blobs),
                                runtime_site=prepare_runtime_site(root / "runtime-site"))
        self.logs: list[str] = []

    def build(self, *layers: dict[str, Any], image_id: str = "im-test", force: bool = False) -> BuiltImage:
        self.logs = []
        return asyncio.run(self.store.build(image_id, {"layers": list(layers)}, self.logs.append, force=force))

    def layer_dirs(self) -> set[str]:
        return {p.name for p in (self.root / "images").iterdir() if p.name != "refs"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Builder:
    """One store for tests that only add layers on top of a shared base, so the base is built once."""
    return Builder(tmp_path_factory.mktemp("images"))


def run_python(image: BuiltImage, code: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run([str(image.python), "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_base_is_a_venv_of_the_host_python_that_can_run_the_runtime(shared: Builder) -> None:
    image = shared.build(BASE)
    assert image.root == shared.root / "images" / layer_chain_ids({"layers": [BASE]})[0]
    assert image.python_version.startswith(SERIES)
    out = run_python(image, "import sys, skylift._runtime.entrypoint, msgpack, cloudpickle; print(sys.prefix)")
    assert out == str(image.root)
    assert (image.root / "skylift-layer.json").exists()
    assert (image.root / "bin" / "pip").exists()


def test_pip_install_a_package_through_the_hosts_index_settings(shared: Builder) -> None:
    image = shared.build(BASE, layer("pip_install", packages=["six"], index_url=None, extra_index_url=None,
                                     find_links=None, pre=False, extra_options=""))
    out = run_python(image, "import six; print(six.__file__)")
    assert out.startswith(str(image.root) + "/lib/")
    # The base layer is untouched by its child's install.
    base = shared.root / "images" / layer_chain_ids({"layers": [BASE]})[0]
    assert not list(base.glob("lib/python*/site-packages/six.py"))


def test_run_commands_env_and_workdir(shared: Builder) -> None:
    image = shared.build(
        BASE,
        layer("env", vars={"GREETING": "hello"}),
        layer("workdir", path="/app"),
        layer("run_commands", commands=["echo \"$GREETING from $(basename $(pwd))\" > greeting.txt",
                                        "python -c 'import sys; print(sys.prefix)' > prefix.txt"]),
    )
    assert image.env == {"GREETING": "hello"}
    assert image.workdir == "/app"
    assert image.host_path("/app/greeting.txt").read_text() == "hello from app\n"
    # Commands run with the image's venv first on PATH (at the time, under its temporary name).
    assert ".tmp-" in image.host_path("/app/prefix.txt").read_text()


def test_add_local_file_and_python_source_from_blobs(shared: Builder) -> None:
    config = shared.blobs.add(b"answer: 42\n")
    module = shared.blobs.add(b"VALUE = 'from my_lib'\n")
    image = shared.build(
        BASE,
        layer("add_local_file", files=[{"path": "config.yaml", "sha256": config, "mode": 0o640}],
              remote_path="/etc/app", copy=True),
        layer("add_local_python_source", files=[{"path": "my_lib/__init__.py", "sha256": module, "mode": 0o644}],
              remote_path="/root", copy=True, modules=["my_lib"]),
    )
    path = image.host_path("/etc/app/config.yaml")
    assert path.read_text() == "answer: 42\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert run_python(image, "import my_lib; print(my_lib.VALUE)") == "from my_lib"


def test_rebuilding_an_unchanged_image_does_no_work(shared: Builder) -> None:
    layers = (BASE, layer("env", vars={"A": "1"}), layer("run_commands", commands=["echo built > marker"]))
    shared.build(*layers)
    before = shared.layer_dirs()
    start = time.perf_counter()
    image = shared.build(*layers)
    elapsed = time.perf_counter() - start
    assert all(line.endswith("(cached)") for line in shared.logs[:-1]), shared.logs
    assert shared.layer_dirs() == before
    assert image.env == {"A": "1"}
    assert elapsed < 1.0, f"a cached rebuild took {elapsed * 1000:.0f} ms"


def test_a_changed_last_step_rebuilds_only_that_layer(shared: Builder) -> None:
    first = shared.build(BASE, layer("env", vars={"B": "1"}), layer("run_commands", commands=["echo one > f"]))
    second = shared.build(BASE, layer("env", vars={"B": "1"}), layer("run_commands", commands=["echo two > f"]))
    assert [line.endswith("(cached)") for line in shared.logs if line.startswith("=> [")] == [True, True, False]
    assert (first.root / "f").read_text() == "one\n"
    assert (second.root / "f").read_text() == "two\n"
    assert first.root.parent == second.root.parent and first.root != second.root


def test_force_build_rebuilds_the_layer_and_those_after_it(shared: Builder) -> None:
    layers = [BASE, layer("run_commands", commands=["date +%s%N > stamp"]), layer("env", vars={"C": "1"})]
    first = shared.build(*layers)
    stamp = (first.root / "stamp").read_text()
    forced = [BASE, {**layers[1], "force_build": True}, layers[2]]
    second = shared.build(*forced)
    assert [line.endswith("(cached)") for line in shared.logs if line.startswith("=> [")] == [True, False, False]
    assert second.root == first.root
    assert (second.root / "stamp").read_text() != stamp


def test_copied_layers_rewrite_the_parents_paths(shared: Builder) -> None:
    script = ('printf "#!%s/bin/python\\nprint(42)\\n" "$VIRTUAL_ENV" > "$VIRTUAL_ENV/bin/hello" '
              '&& chmod +x "$VIRTUAL_ENV/bin/hello"')
    parent = shared.build(BASE, layer("run_commands", commands=[script]))
    child = shared.build(BASE, layer("run_commands", commands=[script]), layer("env", vars={"D": "1"}))
    for image in (parent, child):
        hello = image.root / "bin" / "hello"
        assert hello.read_text().startswith(f"#!{image.root}/bin/python\n")
        assert subprocess.run([str(hello)], capture_output=True, text=True, timeout=30).stdout == "42\n"
        assert str(image.root) in (image.root / "bin" / "activate").read_text()
        assert ".tmp-" not in (image.root / "bin" / "activate").read_text()


def test_failing_command_leaves_no_layer_and_reports_command_code_and_output(shared: Builder) -> None:
    before = shared.layer_dirs()
    failing = layer("run_commands", commands=["echo step one", "echo about to fail; echo oops >&2; exit 3"])
    with pytest.raises(BuildError) as info:
        shared.build(BASE, failing)
    message = str(info.value)
    assert "step 2 (run_commands" in message
    assert "echo about to fail; echo oops >&2; exit 3" in message
    assert "exited with code 3" in message
    assert "oops" in message
    assert shared.layer_dirs() == before
    assert not any(name.startswith(".tmp-") for name in shared.layer_dirs())


def test_python_version_that_the_worker_lacks_fails_clearly(tmp_path: Path) -> None:
    builder = Builder(tmp_path)
    with pytest.raises(BuildError) as info:
        builder.build(layer("debian_slim", python_version="3.2"))
    assert "'3.2' is not available on this worker" in str(info.value)
    assert SERIES in str(info.value)


def test_an_image_without_a_base_starts_from_the_workers_python(shared: Builder) -> None:
    image = shared.build(layer("env", vars={"E": "1"}))
    assert image.python.exists()
    assert image.env == {"E": "1"}


def test_steps_the_process_runtime_cannot_do_say_so(shared: Builder) -> None:
    with pytest.raises(BuildError, match="from_dockerfile is not supported by the process runtime"):
        shared.build(layer("from_dockerfile", dockerfile="FROM scratch", build_args={}))
    with pytest.raises(BuildError, match="can't install Debian packages"):
        shared.build(BASE, layer("apt_install", packages=["surely-not-a-debian-package-xyz"]))


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian host")
def test_apt_install_of_packages_the_host_has_succeeds(shared: Builder) -> None:
    shared.build(BASE, layer("apt_install", packages=["dpkg"]))
    assert any("already on the worker host" in line for line in shared.logs)


def test_pip_shim_installs_into_the_image(shared: Builder) -> None:
    image = shared.build(BASE, layer("run_commands", commands=["pip --version"]))
    assert any(line.startswith("pip ") for line in shared.logs), shared.logs
    assert image.python.exists()
