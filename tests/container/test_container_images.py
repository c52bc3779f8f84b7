"""The container runtime's image builder, for real: every step runs inside the image, into a layer."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from skylift._hashing import layer_chain_ids
from skylift.worker.blobs import BlobCache, DictBlobSource
from skylift.worker.container import Sandbox, SandboxSpec
from skylift.worker.container_images import ContainerImageStore, LayeredImage
from skylift.worker.container_layout import RUNTIME_DIR, runtime_binds
from skylift.worker.images import BuildError, prepare_runtime_site

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("container_host"), pytest.mark.timeout(300)]

BASE = {"step": "debian_slim", "args": {"python_version": "3.11"}, "files": [], "force_build": False}
PIP = {"index_url": None, "extra_index_url": None, "find_links": None, "pre": False, "extra_options": ""}


def layer(step: str, files: list[dict[str, Any]] | None = None, force_build: bool = False,
          **args: Any) -> dict[str, Any]:
    return {"step": step, "args": args, "files": files or [], "force_build": force_build}


class Builder:
    def __init__(self, root: Path, base_cache: Path) -> None:
        self.blobs = DictBlobSource()
        self.root = root
        self.store = ContainerImageStore(root / "container-images", BlobCache(root / "blobs-cache", self.blobs),
                                         runtime_site=prepare_runtime_site(root / "runtime-site"),
                                         base_cache=base_cache)
        self.logs: list[str] = []

    def build(self, *layers: dict[str, Any], image_id: str = "im-test", force: bool = False) -> LayeredImage:
        self.logs = []

        async def go() -> LayeredImage:
            built = await self.store.build(image_id, {"layers": list(layers)}, self.logs.append, force=force)
            await asyncio.sleep(0)  # build threads' last lines arrive through the loop
            assert isinstance(built, LayeredImage)
            return built

        return asyncio.run(go())

    def layer_dirs(self) -> set[str]:
        return {p.name for p in (self.root / "container-images").iterdir() if not p.name.startswith((".", "refs"))}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, debian_base: Path) -> Builder:
    return Builder(tmp_path_factory.mktemp("cimages"), debian_base.parent)


def run_in(image: LayeredImage, tmp: Path, script: str) -> tuple[int, str, str]:
    """Run `python -c script` in a container of `image`, with the runtime packages bound as tasks get them."""
    async def go() -> tuple[int, str, str]:
        env = {**image.env, "PYTHONPATH": RUNTIME_DIR}
        spec = SandboxSpec(layers=image.layers, command=[image.python_path or "python3", "-c", script],
                           task_id="ta-images", state_dir=tmp / f"run-{time.monotonic_ns()}", env=env,
                           cwd=image.workdir or "/", binds=runtime_binds(), block_network=True)
        sandbox = await Sandbox.start(spec)
        out, err = await asyncio.gather(sandbox.stdout.read(), sandbox.stderr.read())
        return await sandbox.wait(), out.decode(), err.decode()

    return asyncio.run(go())


def test_debian_slim_is_the_debian_base_with_a_venv_that_runs_the_runtime(shared: Builder, tmp_path: Path) -> None:
    image = shared.build(BASE)
    assert image.python_path == "/opt/skylift-venv/bin/python" and image.python_is_venv
    assert image.python_version.startswith("3.11.")
    assert image.env["VIRTUAL_ENV"] == "/opt/skylift-venv"
    code, out, err = run_in(image, tmp_path, "import sys, skylift._runtime.entrypoint, msgpack, cloudpickle; "
                            "print(sys.executable, sys.prefix, open('/etc/debian_version').read().strip())")
    assert code == 0, err
    exe, prefix, debian = out.split()
    assert (exe, prefix) == ("/opt/skylift-venv/bin/python", "/opt/skylift-venv")
    assert debian.startswith("12.")


def test_another_python_series_is_a_clear_error(shared: Builder) -> None:
    with pytest.raises(BuildError, match=r"python_version='3\.12'.*3\.11"):
        shared.build({**BASE, "args": {"python_version": "3.12"}})
    assert not list((shared.root / "container-images").glob(".tmp-*"))


def test_steps_run_inside_the_image(shared: Builder, tmp_path: Path) -> None:
    config = shared.blobs.add(b"answer: 42\n")
    module = shared.blobs.add(b"VALUE = 'from my_lib'\n")
    image = shared.build(
        BASE,
        layer("apt_install", packages=["jq"]),
        layer("pip_install", packages=["six"], **PIP),
        layer("env", vars={"GREETING": "hello"}),
        layer("workdir", path="/app"),
        layer("run_commands", commands=['echo "$GREETING from $(pwd)" > greeting.txt', "rm /etc/motd"]),
        layer("add_local_file", files=[{"path": "config.yaml", "sha256": config, "mode": 0o640}],
              remote_path="/etc/app", copy=True),
        layer("add_local_python_source", files=[{"path": "my_lib/__init__.py", "sha256": module, "mode": 0o644}],
              remote_path="/root", copy=True, modules=["my_lib"]),
    )
    assert image.env["GREETING"] == "hello" and image.workdir == "/app"
    assert any("Setting up jq" in line for line in shared.logs)
    assert not [line for line in shared.logs if "Reading database" in line and "%" in line]  # dpkg without a pty
    script = """
import os, stat, subprocess, sys, six
sys.path.insert(0, "/root")
import my_lib
print(subprocess.run(["jq", "-n", "40 + 2"], capture_output=True, text=True).stdout.strip())
print(six.__file__.startswith("/opt/skylift-venv/"))
print(open("greeting.txt").read().strip())
print(os.path.exists("/etc/motd"))
print(open("/etc/app/config.yaml").read().strip(), oct(stat.S_IMODE(os.stat("/etc/app/config.yaml").st_mode)))
print(my_lib.VALUE)
"""
    code, out, err = run_in(image, tmp_path, script)
    assert code == 0, err
    assert out.splitlines() == ["42", "True", "hello from /app", "False", "answer: 42 0o640", "from my_lib"]
    # Each layer holds only its own changes: the base knows nothing of jq, the deletion is a whiteout.
    layers = {Path(p).parent.name: Path(p) for p in image.layers}
    ids = layer_chain_ids({"layers": [BASE]})
    assert ids[0] not in layers  # debian_slim adds no directory of its own
    commands_layer = next(p for p in image.layers if (p / "app" / "greeting.txt").exists())
    motd = os.lstat(commands_layer / "etc" / "motd")
    assert os.major(motd.st_rdev) == 0 and os.minor(motd.st_rdev) == 0
    assert not any((p / "run" / "skylift-build").exists() for p in image.layers)


def test_run_function_runs_the_pickled_function_in_the_image(shared: Builder, tmp_path: Path) -> None:
    import cloudpickle

    def bake(path: str, text: str) -> None:
        import sys

        import modal  # an unchanged Modal build function: skylift answers (docs/modal-compatibility.md)

        with open(path, "w") as f:
            f.write(f"{text} by {sys.executable} with {modal.__name__}")

    payload = shared.blobs.add(cloudpickle.dumps((bake, ("/baked.txt", "baked"), {})))
    image = shared.build(BASE, layer("run_function", files=[{"path": "function.pkl", "sha256": payload, "mode": 0o644}],
                                     function_name="bake", cache_key="k1"))
    code, out, err = run_in(image, tmp_path, "print(open('/baked.txt').read())")
    assert code == 0, err
    assert out.strip() == "baked by /opt/skylift-venv/bin/python with skylift"


def test_a_failed_step_names_the_command_its_output_and_code_and_leaves_nothing(shared: Builder) -> None:
    before = shared.layer_dirs()
    with pytest.raises(BuildError) as info:
        shared.build(BASE, layer("run_commands", commands=["echo fine", "echo 'no such thing' >&2; exit 3"]))
    message = str(info.value)
    assert "step 2 (run_commands" in message and "exit 3" in message
    assert "exited with code 3" in message and "no such thing" in message
    assert shared.layer_dirs() - before <= {layer_chain_ids({"layers": [BASE]})[0]}
    assert not list((shared.root / "container-images").glob(".tmp-*"))


def test_rebuilds_only_what_changed(shared: Builder) -> None:
    layers = [BASE, layer("env", vars={"A": "1"}), layer("run_commands", commands=["echo one > /f"]),
              layer("run_commands", commands=["echo two > /g"])]
    shared.build(*layers)
    start = time.perf_counter()
    shared.build(*layers)
    elapsed = time.perf_counter() - start
    assert all(line.endswith("(cached)") for line in shared.logs if line.startswith("=> [")), shared.logs
    assert elapsed < 0.5, f"a cached rebuild took {elapsed * 1000:.0f} ms"
    changed = [*layers[:2], layer("run_commands", commands=["echo uno > /f"]), layers[3]]
    shared.build(*changed)
    assert [line.endswith("(cached)") for line in shared.logs if line.startswith("=> [")] == [True, True, False, False]
    forced = [layers[0], {**layers[1], "force_build": True}, *layers[2:]]
    shared.build(*forced)
    assert [line.endswith("(cached)") for line in shared.logs if line.startswith("=> [")] == [True, False, False, False]
