"""`python -m skylift.worker.shell SPEC.json`: a shell in a fresh container of a function (`skylift shell`).

`skylift shell FILE::fn` runs the app (so the function's image is built and its source uploaded),
then runs this module *on the same machine* as the worker, with the platform's home: the image is
found in the worker's image store, the function's mounts are materialised like a task's, and the
container is made like the function's own (`container_task.container_spec`: layers, /root, the
runtime packages, env, cpu/memory limits, block_network) — only the entrypoint differs. That is the
embedded default's case; a worker on another machine would need the control plane to relay a
terminal, which isn't built (`skylift container exec` runs commands in running containers anywhere).

With a terminal, the shell gets a pty of its own as its controlling terminal (`Sandbox.exec(tty=True)`
in a container that only sleeps); without one (`--cmd` in a script), stdin, stdout and stderr are
relayed through pipes. The exit status is the shell's. On a host without the container runtime the
command runs in the image's venv on the host (the process runtime's "container").

SPEC: {home, server_url, image_id, definition, mounts, command: [argv] | null}
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import tty
import uuid
from pathlib import Path
from typing import Any

from .._protocol import api
from .._runtime.connection import ReconnectingClient
from .._version import __version__
from .blobs import BlobCache, RpcBlobSource
from .images import ImageStore, prepare_runtime_site
from .mounts import MountStore, source_dir
from .runtimes import ENV, choose

DEFAULT_SHELL = 'if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi'
KEEP_ALIVE = ["/bin/sh", "-c", "exec sleep 2147483647"]


class ShellError(Exception):
    pass


async def _materialise(spec: dict[str, Any], home: Path) -> tuple[Path | None, ReconnectingClient]:
    token = (home / "token").read_text().strip()
    rpc = ReconnectingClient(spec["server_url"], {"token": token, "role": api.ROLE_CLIENT, "version": __version__},
                             give_up_after=15.0)
    await rpc.connect()
    blobs = BlobCache(home / "blobs-cache", RpcBlobSource(rpc))
    return await MountStore(home / "mounts", blobs).ensure(spec.get("mounts") or []), rpc


def _window_size(fd: int) -> bytes | None:
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    except OSError:
        return None


async def _relay_tty(process: asyncio.subprocess.Process, master: int) -> None:
    """Copy the user's terminal (raw) to the pty and back until the shell exits."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def from_user() -> None:
        data = os.read(0, 65536)
        if data:
            os.write(master, data)
        else:
            loop.remove_reader(0)

    def to_user() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every holder of the pty's other end is gone
            data = b""
        if data:
            os.write(1, data)
        else:
            loop.remove_reader(master)
            done.set()

    def resize() -> None:
        size = _window_size(0)
        if size is not None:
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)

    saved = termios.tcgetattr(0)
    tty.setraw(0)
    loop.add_reader(0, from_user)
    loop.add_reader(master, to_user)
    loop.add_signal_handler(signal.SIGWINCH, resize)
    try:
        waiter = asyncio.ensure_future(process.wait())
        await asyncio.wait([waiter, asyncio.ensure_future(done.wait())], return_when=asyncio.ALL_COMPLETED)
    finally:
        loop.remove_reader(0)
        loop.remove_reader(master)
        loop.remove_signal_handler(signal.SIGWINCH)
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


async def _pipe_out(reader: asyncio.StreamReader, fd: int) -> None:
    while chunk := await reader.read(65536):
        os.write(fd, chunk)


def _pipe_in(writer: asyncio.StreamWriter, loop: asyncio.AbstractEventLoop) -> None:
    """Copy our stdin to the container's (a thread: stdin may be a file, which asyncio can't watch)."""
    try:
        while chunk := os.read(0, 65536):
            asyncio.run_coroutine_threadsafe(_write(writer, chunk), loop).result()
    except (OSError, RuntimeError):
        pass
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(writer.close)


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def run_in_container(spec: dict[str, Any], home: Path) -> int:
    from .container import Sandbox, SandboxSpec
    from .container_images import ContainerImageStore
    from .container_task import container_spec

    store = ContainerImageStore(home / "container-images", BlobCache(home / "blobs-cache", _NoBlobs()),
                                runtime_site=prepare_runtime_site(home / "runtime-site"))
    image = store.lookup(spec["image_id"])
    if image is None:
        raise ShellError(f"image {spec['image_id']} is not built on this machine (skylift shell starts the container "
                         f"here, beside the embedded worker; its images are in {store.root})")
    mount_root, rpc = await _materialise(spec, home)
    await rpc.close()
    shell_id = f"shell-{uuid.uuid4().hex[:12]}"
    task = {"task_id": shell_id, "token": "", "server_url": spec["server_url"], "definition": spec["definition"],
            "env": dict((spec["definition"] or {}).get("env") or {})}
    cspec = container_spec(task, image, mount_root=mount_root, scratch=home / "tasks" / shell_id)
    for name in (api.ENV_SERVER_URL, api.ENV_TASK_ID, api.ENV_TASK_TOKEN):
        cspec.env.pop(name, None)  # a shell is no task: it has no token to talk to the control plane with
    cspec.env.setdefault("TERM", os.environ.get("TERM", "xterm"))
    command = spec.get("command") or ["/bin/sh", "-c", DEFAULT_SHELL]
    interactive = os.isatty(0) and os.isatty(1)
    sandbox_spec = SandboxSpec(
        layers=cspec.layers, command=KEEP_ALIVE if interactive else command, task_id=shell_id,
        state_dir=home / "tasks" / shell_id / "sandbox", env=cspec.env, cwd=str(cspec.cwd),
        binds=list(cspec.binds), cpu=cspec.resources.get("cpu_limit"), memory_mb=cspec.resources.get("memory_limit"),
        block_network=cspec.block_network, stdin=not interactive)
    sandbox = await Sandbox.start(sandbox_spec)
    try:
        if interactive:
            master, slave = os.openpty()
            size = _window_size(0)
            if size is not None:
                fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
            process = await sandbox.exec(command, stdin=slave, stdout=slave, stderr=slave, tty=True)
            os.close(slave)
            try:
                await _relay_tty(process, master)
            finally:
                os.close(master)
            return process.returncode if process.returncode is not None else 1
        assert sandbox.stdin is not None
        loop = asyncio.get_running_loop()
        threading.Thread(target=_pipe_in, args=(sandbox.stdin, loop), daemon=True).start()
        await asyncio.gather(_pipe_out(sandbox.stdout, 1), _pipe_out(sandbox.stderr, 2))
        code = await sandbox.wait()
        if sandbox.oom_killed:
            print(f"skylift shell: the container {sandbox.exit_reason(code)}", file=sys.stderr)
        return code
    finally:
        await sandbox.close()
        shutil.rmtree(home / "tasks" / shell_id, ignore_errors=True)


def run_on_host(spec: dict[str, Any], home: Path) -> int:
    """The process runtime's version: the command in the image's venv, in the function's source dir."""
    store = ImageStore(home / "images", BlobCache(home / "blobs-cache", _NoBlobs()),
                       runtime_site=prepare_runtime_site(home / "runtime-site"))
    image = store.lookup(spec["image_id"])
    if image is None:
        raise ShellError(f"image {spec['image_id']} is not built on this machine ({store.root})")
    mount_root, rpc = asyncio.run(_materialise(spec, home))
    asyncio.run(rpc.close())
    source = source_dir(mount_root, spec.get("mounts") or [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYLIFT_")}
    env.update(image.env)
    env.update({str(k): str(v) for k, v in ((spec["definition"] or {}).get("env") or {}).items()})
    env.update(VIRTUAL_ENV=str(image.root), PATH=f"{image.root / 'bin'}:{env.get('PATH', os.defpath)}")
    if source is not None:
        env["PYTHONPATH"] = str(source)
    command = spec.get("command") or [os.environ.get("SHELL") or "/bin/sh"]
    return subprocess.call(command, env=env, cwd=str(source or Path.cwd()))


class _NoBlobs:
    async def get(self, sha256: str) -> bytes:
        raise ShellError(f"blob {sha256} is needed to look up an image; images are built by the worker")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m skylift.worker.shell SPEC.json (run by `skylift shell`)", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    home = Path(spec["home"])
    from .container import available

    try:
        runtime = choose(os.environ.get(ENV), available(), has_gpus=False)
        if runtime.name == "container":
            return asyncio.run(run_in_container(spec, home))
        return run_on_host(spec, home)
    except Exception as exc:  # a command-line tool: say what failed, exit non-zero
        print(f"skylift shell: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
