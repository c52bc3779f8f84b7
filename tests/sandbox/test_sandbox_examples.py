"""Modal's documented Sandbox examples, unchanged (`import modal`), on each runtime the host has.

The process runtime always; the container runtime where it can run (root, bubblewrap): there the
sandboxes are isolated like functions (docs/sandboxes.md).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from skylift import _modal_alias

pytestmark = pytest.mark.timeout(180)


def _container_runtime_available() -> bool:
    return os.geteuid() == 0 and shutil.which("bwrap") is not None


@pytest.fixture(scope="module", params=["process", "container"])
def modal(request: pytest.FixtureRequest) -> Iterator[Any]:
    """`import modal` (skylift), with a private platform on the parametrised runtime."""
    from skylift.testing import local_platform

    runtime = request.param
    if runtime == "container" and not _container_runtime_available():
        pytest.skip("the container runtime needs root and bubblewrap")
    installed = _modal_alias.install()
    saved = os.environ.get("SKYLIFT_RUNTIME")
    os.environ["SKYLIFT_RUNTIME"] = runtime
    home = tempfile.mkdtemp(prefix=f"skylift-sbx-{runtime}-")
    try:
        with local_platform(home):
            import modal as modal_module

            modal_module._test_runtime = runtime  # type: ignore[attr-defined]
            yield modal_module
    finally:
        if saved is None:
            os.environ.pop("SKYLIFT_RUNTIME", None)
        else:
            os.environ["SKYLIFT_RUNTIME"] = saved
        if installed:
            _modal_alias.uninstall()
        import skylift

        vars(skylift).pop("_test_runtime", None)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def app(modal: Any) -> Any:
    return modal.App.lookup("sandbox-examples", create_if_missing=True)


def test_stdin_stdout_and_wait(modal: Any, app: Any) -> None:
    sb = modal.Sandbox.create("bash", "-c", "echo hi; cat; echo err >&2; exit 3", app=app)
    sb.stdin.write(b"x")
    sb.stdin.write_eof()
    sb.stdin.drain()
    assert sb.stdout.read() == "hi\nx"
    assert sb.stderr.read() == "err\n"
    sb.wait()
    assert sb.returncode == 3
    assert sb.poll() == 3
    again = modal.Sandbox.from_id(sb.object_id)  # the record outlives the sandbox
    assert again.returncode == 3 and again.object_id.startswith("sb-")


def test_exec_python_and_lines(modal: Any, app: Any) -> None:
    sb = modal.Sandbox.create(app=app)  # no command: it idles until terminated
    try:
        p = sb.exec("python", "-c", "import sys; print(1); print(2); sys.stderr.write('e'); sys.exit(5)",
                    bufsize=1)  # line-buffered: iteration yields lines, as Modal's
        assert [line for line in p.stdout] == ["1\n", "2\n"]
        assert p.stderr.read() == "e"
        assert p.wait() == 5 and p.returncode == 5
        q = sb.exec("bash", "-c", "read a; echo got:$a", text=False)
        q.stdin.write("hello\n")
        q.stdin.drain()
        assert q.stdout.read() == b"got:hello\n"
        assert q.wait() == 0
        assert sb.poll() is None
    finally:
        sb.terminate()
    with pytest.raises(modal.exception.SandboxTerminatedError):
        sb.wait()
    assert sb.returncode == 137


def test_exec_env_workdir_secrets_and_devnull(modal: Any, app: Any) -> None:
    secret = modal.Secret.from_dict({"SBX_SECRET": "s3cret"})
    sb = modal.Sandbox.create("sleep", "300", app=app, secrets=[secret], env={"SBX_ENV": "e1"}, workdir="/tmp")
    try:
        p = sb.exec("bash", "-c", "echo $SBX_SECRET $SBX_ENV $PWD; echo noise >&2",
                    stderr=modal.stream_type.StreamType.DEVNULL)
        assert p.stdout.read() == "s3cret e1 /tmp\n"
        assert p.stderr.read() == ""
        assert p.wait() == 0
        token = sb.exec("bash", "-c", "echo ${SKYLIFT_TASK_TOKEN:-none}")
        assert token.stdout.read() == "none\n"  # the container's credential is not handed to commands
        t = sb.exec("bash", "-c", "sleep 30; echo never", timeout=1)
        assert t.wait() == -1  # Modal's value for an exec past its timeout
        assert t.stdout.read() == ""  # its children were killed with it
    finally:
        sb.terminate()


def test_timeout(modal: Any, app: Any) -> None:
    sb = modal.Sandbox.create("sleep", "60", app=app, timeout=1)
    with pytest.raises(modal.exception.SandboxTimeoutError):
        sb.wait()
    assert sb.returncode == 124


def test_idle_timeout_ends_an_idle_sandbox(modal: Any, app: Any) -> None:
    sb = modal.Sandbox.create(app=app, idle_timeout=1)
    with pytest.raises(modal.exception.SandboxTimeoutError):
        sb.wait()


def test_names_tags_and_list(modal: Any, app: Any) -> None:
    name = f"sbx-{uuid.uuid4().hex[:8]}"
    sb = modal.Sandbox.create(app=app, name=name, tags={"team": "a"})
    try:
        assert modal.Sandbox.from_name("sandbox-examples", name).object_id == sb.object_id
        sb.set_tags({"team": "b", "kind": "idle"})
        assert sb.get_tags() == {"team": "b", "kind": "idle"}
        found = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"team": "b"})]
        assert found == [sb.object_id]
        assert list(modal.Sandbox.list(app_id=app.app_id, tags={"team": "zzz"})) == []
    finally:
        sb.terminate()
    deadline = time.monotonic() + 10
    while any(s.object_id == sb.object_id for s in modal.Sandbox.list(app_id=app.app_id)):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_aio_forms(modal: Any, app: Any) -> None:
    async def main() -> list[str]:
        sb = await modal.Sandbox.create.aio("bash", "-c", "cat", app=app)
        sb.stdin.write("async\n")
        sb.stdin.write_eof()
        await sb.stdin.drain.aio()
        lines = [line async for line in sb.stdout]
        await sb.wait.aio()
        assert sb.returncode == 0
        return lines

    assert asyncio.run(main()) == ["async\n"]


PROCESSES = "import os; print([open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()])"


def test_sandboxes_dont_see_each_others_files_or_processes(modal: Any, app: Any) -> None:
    if modal._test_runtime != "container":
        pytest.skip("isolation is the container runtime's (the process runtime shares the host)")
    tag = uuid.uuid4().hex[:8]
    a = modal.Sandbox.create("bash", "-c", f"echo {tag} > /tmp/mine; echo {tag} > /root/mine; exec sleep 301",
                             app=app)
    b = modal.Sandbox.create(app=app)
    try:
        deadline = time.monotonic() + 30
        while a.exec("cat", "/tmp/mine").stdout.read() != f"{tag}\n":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        seen = b.exec("bash", "-c", "cat /tmp/mine /root/mine 2>&1; echo; python -c \"" + PROCESSES + "\"")
        out = seen.stdout.read()
        assert tag not in out, out  # neither its files nor its command line
        assert "sleep" not in out and "No such file" in out, out
        assert "sleep" in a.exec("python", "-c", PROCESSES).stdout.read()  # a sees its own
    finally:
        a.terminate()
        b.terminate()


# Run inside a sandbox: take the container's token from its runtime (the parent process) and try it.
STEAL = """
import asyncio, os, sys
from skylift._version import __version__
from skylift._runtime.connection import ReconnectingClient
raw = open(f"/proc/{os.getppid()}/environ").read().split("\\0")
env = dict(kv.split("=", 1) for kv in raw if "=" in kv)
if "SKYLIFT_TASK_TOKEN" not in env:  # a container forked from a preloaded interpreter got it by other means
    print("no token visible")
    sys.exit(0)
hello = {"token": env["SKYLIFT_TASK_TOKEN"], "role": "container", "version": __version__,
         "task_id": env["SKYLIFT_TASK_ID"]}
async def main():
    rpc = ReconnectingClient(env["SKYLIFT_SERVER_URL"], hello, give_up_after=10)
    for method, params in [("sandbox.get", {"sandbox_id": sys.argv[1]}), ("sandbox.list", {"app_id": sys.argv[2]}),
                           ("app.list", {"environment": "main"}), ("object.list", {"kind": "secret"})]:
        try:
            await rpc.call(method, params)
            print(method, "allowed")
        except Exception as exc:
            print(method, "refused", getattr(exc, "code", exc))
    await rpc.close()
asyncio.run(main())
"""


def test_a_sandboxs_token_reaches_nothing_but_its_own_relay(modal: Any, app: Any) -> None:
    other = modal.Sandbox.create(app=app)
    sb = modal.Sandbox.create(app=app)
    try:
        p = sb.exec("python", "-c", STEAL, other.object_id, app.app_id)
        out, err = p.stdout.read(), p.stderr.read()
        assert p.wait() == 0, err
        refused = [f"{m} refused auth" for m in ("sandbox.get", "sandbox.list", "app.list", "object.list")]
        assert out == "no token visible\n" or out.split("\n")[:-1] == refused, out + err
    finally:
        other.terminate()
        sb.terminate()


def test_large_stdin_and_stdout_stream_through(modal: Any, app: Any) -> None:
    sb = modal.Sandbox.create(app=app)
    try:
        p = sb.exec("bash", "-c", "sha256sum; head -c 20000000 /dev/zero | wc -c", text=False)
        blob = os.urandom(3 * 1024 * 1024)
        for i in range(0, len(blob), 1024 * 1024):  # each drain at most Modal's 2 MiB buffer
            p.stdin.write(blob[i:i + 1024 * 1024])
            p.stdin.drain()
        p.stdin.write_eof()
        p.stdin.drain()
        import hashlib

        assert p.stdout.read() == f"{hashlib.sha256(blob).hexdigest()}  -\n20000000\n".encode()
        assert p.wait() == 0
        slow = sb.exec("bash", "-c", "sleep 2; wc -c")  # reads nothing for 2 s: 20 MiB must wait for room
        chunk = b"y" * (1024 * 1024)
        for _ in range(20):
            slow.stdin.write(chunk)
            slow.stdin.drain()
        slow.stdin.write_eof()
        slow.stdin.drain()
        assert slow.stdout.read() == f"{20 * 1024 * 1024}\n"
        big = sb.exec("head", "-c", "40000000", "/dev/urandom", text=False)
        assert len(big.stdout.read()) == 40_000_000  # more than a stream buffers (16 MiB): back-pressure
        assert big.wait() == 0
    finally:
        sb.terminate()


def test_modals_guide_runs_unchanged_under_compat(modal: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "programs" / "sandbox_guide.py"
    env = {k: v for k, v in os.environ.items() if k != _modal_alias.ENV_ALIAS}
    env["PYTHONPATH"] = str(Path(modal.__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-m", "skylift.compat", str(script)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n\ntick 1\ntick 2\ntick 3\nfoo bar\nreturncode 0\n", done.stdout


def test_a_function_starts_a_sandbox_of_its_own_app(modal: Any) -> None:
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "programs"))
    try:
        program = importlib.import_module("sandbox_in_function")
    finally:
        sys.path.pop(0)
    with program.app.run():
        assert program.echo_in_sandbox.remote("inside") == "inside\n"
        assert program.lists_its_own.remote()
