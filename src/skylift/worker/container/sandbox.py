"""One running container: overlay root, cgroups, namespaces, bubblewrap — and its cleanup.

    sandbox = await Sandbox.start(SandboxSpec(layers=[base], command=["python3", "-c", "print(1)"],
                                              task_id="ta-1", state_dir=scratch))
    out = await sandbox.stdout.read()      # asyncio streams, as with asyncio.subprocess
    code = await sandbox.wait()            # unmounts, deletes the writable layer and the cgroups
    if sandbox.oom_killed: print(sandbox.exit_reason(code))

The caller must read `stdout` and `stderr` while waiting (as with any pipe), and should start sandboxes
from the thread running the event loop: bubblewrap dies with the thread that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import _libc
from . import host, network, seccomp, userns
from .bwrap import BwrapOptions, build_args
from .cgroups import Cgroup, CgroupError, CgroupLimits, CgroupStats
from .cgroups import remove_stale as remove_stale_cgroups
from .disk import EphemeralDisk, ephemeral_disk
from .errors import SandboxError
from .launch import container_env, etc_files, launcher_argv
from .overlay import attach_idmapped, mount_overlay, unmount_all_below
from .userns import fork_userns

START_TIMEOUT = 30.0
DEFAULT_PIDS_MAX = 4096
_ENTER = Path(__file__).with_name("enter.py")


@dataclass(kw_only=True)
class SandboxSpec:
    layers: list[Path]  # lowest first
    command: list[str]
    task_id: str
    state_dir: Path  # scratch: the writable layer and the generated /etc files live here
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    binds: list[tuple[Path | str, str, bool]] = field(default_factory=list)  # (host, container, read_only)
    cpu: float | None = None  # cores (a CFS quota)
    cpu_request: float | None = None  # cores: the container's weight when CPUs are contended
    memory_mb: int | None = None
    # MiB for the writable layer and /tmp (disk.py); None: unbounded, in the state directory, /tmp a tmpfs
    disk_mb: int | None = None
    block_network: bool = False
    # Its cgroups go under skylift/<cgroup_group>/ (a worker's own tree, reaped at its start: reap.py).
    cgroup_group: str = ""
    hostname: str = "skylift"
    pids_max: int | None = DEFAULT_PIDS_MAX
    stdin: bool = False  # give the container a stdin pipe (else /dev/null)
    # A memory-snapshot template: the host directory of its forks' writable layers (docs/cold-starts.md)
    fork_layers: Path | None = None
    pass_fds: tuple[int, ...] = ()  # fds the command inherits (a template's socket to the worker)


@dataclass(frozen=True)
class SandboxStats:
    cpu_seconds: float
    memory_bytes: int
    memory_peak_bytes: int
    oom_killed: bool
    pids: int


def cgroup_name(task_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", task_id)[:64] or "task"
    return f"{safe}-{uuid.uuid4().hex[:8]}"


class Sandbox:
    """A started container. Build it with `await Sandbox.start(spec)`."""

    def __init__(self, spec: SandboxSpec, process: asyncio.subprocess.Process, cgroup: Cgroup,
                 netns: network.Netns | None, init_pid: int, mnt_ns: int, env: dict[str, str]) -> None:
        self.spec = spec
        self.process = process
        self.pid = init_pid  # the container's pid 1 (bubblewrap's reaper), as the host sees it
        self._cgroup = cgroup
        self._netns = netns
        self._mnt_ns = mnt_ns
        self._env = env
        self._final: CgroupStats | None = None
        self._returncode: int | None = None
        self._wait_task: asyncio.Task[int] | None = None
        self._cleaned = False
        # bubblewrap writes its exit status here at the end: the pipe stays open until then (no SIGPIPE)
        self._status_pipe: asyncio.BaseTransport | None = None
        self._status: asyncio.StreamReader | None = None
        self.cleanup_error: str | None = None
        self.command_started: bool | None = None  # False: bubblewrap failed before running the command
        self.started_at = time.monotonic()
        self._shown: Path | None = None  # a template's directory of what bubblewrap mounts (see start)
        self._disk: EphemeralDisk | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    async def start(cls, spec: SandboxSpec) -> Sandbox:
        _validate(spec)
        state = spec.state_dir
        rootfs, upper, work = state / "rootfs", state / "upper", state / "work"
        cgroup = Cgroup(cgroup_name(spec.task_id), group=spec.cgroup_group)
        netns: network.Netns | None = None
        status_r = status_w = seccomp_fd = -1
        process: asyncio.subprocess.Process | None = None
        template = spec.fork_layers is not None
        userns_fd = fork_userns().open() if template else -1
        shown = _shown_dir(cgroup.name) if template else state  # what bubblewrap mounts from
        fork_layers = shown / "forks" if template else None
        if template:
            rootfs = shown / "rootfs"
        disk: EphemeralDisk | None = None
        try:
            if spec.disk_mb is not None and not template:
                disk = await asyncio.to_thread(ephemeral_disk, state, spec.disk_mb)
                if disk is not None:
                    upper, work = disk.upper, disk.work
            # A template runs as the root of the forks' user namespace, an unprivileged host uid
            # (userns.py): the image and its binds are shown to it through idmapped mounts, all
            # under a directory that uid may reach (the state directory's parents may be private).
            idmap = (userns_fd, shown / "lowers", userns.BASE) if template else None
            mount_overlay(spec.layers, upper, work, rootfs, idmap=idmap)
            if disk is not None:
                _writable_tmp(rootfs)
            binds = [(str(h), c, ro) for h, c, ro in spec.binds]
            if template:
                assert spec.fork_layers is not None and fork_layers is not None
                binds = [(str(attach_idmapped(Path(h), shown / "binds" / str(i), userns_fd)), c, ro)
                         for i, (h, c, ro) in enumerate(binds)]
                os.chown(spec.fork_layers, userns.BASE, userns.BASE)
                fork_layers.mkdir()
                _libc.mount(str(spec.fork_layers), str(fork_layers), None, _libc.MS_BIND)
            cgroup.create(CgroupLimits(spec.cpu, spec.memory_mb, spec.pids_max, cpu_request=spec.cpu_request))
            if not spec.block_network:
                pool = network.pool()
                netns = pool.try_acquire() or await asyncio.to_thread(pool.acquire)
            files = etc_files(shown / "etc", spec.hostname, host.resolv_conf())
            seccomp_fd = os.open(seccomp.compiled_filter(host.runtime_dir(), template), os.O_RDONLY | os.O_CLOEXEC)
            status_r, status_w = os.pipe()
            options = BwrapOptions(
                rootfs=rootfs, command=spec.command, cwd=spec.cwd, hostname=spec.hostname, binds=binds, files=files,
                cgroup_dirs=cgroup.visible_dirs, unshare_net=spec.block_network,
                seccomp_fd=seccomp_fd, status_fd=status_w, fork_layers=fork_layers,
                private_tmp=disk is None,  # else /tmp is on the bounded writable layer, not in RAM
                userns_fd=userns_fd if template else None,
            )
            argv = launcher_argv(build_args(host.readonly_bwrap(), options), cgroup.join_files,
                                 netns.path if netns else None, as_uid=userns.BASE if template else None)
            env = container_env(spec.env)
            process = await asyncio.create_subprocess_exec(
                *argv, env=env, start_new_session=True,
                pass_fds=(seccomp_fd, status_w, *spec.pass_fds, *([userns_fd] if template else [])),
                stdin=asyncio.subprocess.PIPE if spec.stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            os.close(status_w)
            status_w = -1
            fd, status_r = status_r, -1  # the reader owns it now
            status, status_pipe, status_reader = await _read_status(fd)
            if "child-pid" not in status:
                status_pipe.close()
                _, err_bytes = await process.communicate()
                err = err_bytes.decode(errors="replace").strip()
                raise SandboxError(f"container {spec.task_id} failed to start (exit {process.returncode}): {err}")
        except BaseException:
            for fd in (status_r, status_w):
                if fd >= 0:
                    os.close(fd)
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()  # its init dies with it (--die-with-parent); cgroup.remove() reaps the rest
            unmount_all_below(state)  # (a template's idmapped layers may be mounted before its root)
            if template and unmount_all_below(shown):
                shutil.rmtree(shown, ignore_errors=True)
            with contextlib.suppress(Exception):
                cgroup.remove()
            if netns is not None:
                network.pool().release(netns)
            if disk is not None:
                disk.remove()
            shutil.rmtree(state / "upper", ignore_errors=True)
            shutil.rmtree(state / "work", ignore_errors=True)
            raise
        finally:
            for fd in (seccomp_fd, userns_fd):
                if fd >= 0:
                    os.close(fd)
        sandbox = cls(spec, process, cgroup, netns, int(status["child-pid"]), int(status.get("mnt-namespace", 0)), env)
        sandbox._shown = shown if template else None
        sandbox._disk = disk
        sandbox._status_pipe, sandbox._status = status_pipe, status_reader
        return sandbox

    @property
    def stdout(self) -> asyncio.StreamReader:
        assert self.process.stdout is not None
        return self.process.stdout

    @property
    def stderr(self) -> asyncio.StreamReader:
        assert self.process.stderr is not None
        return self.process.stderr

    @property
    def stdin(self) -> asyncio.StreamWriter | None:
        return self.process.stdin

    @property
    def ip_address(self) -> str | None:
        """The container's address on its veth (None with `block_network`); nothing else can reach it."""
        return self._netns.address if self._netns else None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int:
        """Wait for the container to exit, then clean up; the exit code (128 + N if killed by signal N)."""
        if self._wait_task is None:
            self._wait_task = asyncio.ensure_future(self._wait_and_clean())
        return await asyncio.shield(self._wait_task)

    async def _wait_and_clean(self) -> int:
        code = await self.process.wait()
        if code < 0:
            code = 128 - code
        self._final = self._cgroup.stats()
        if self._status is not None:
            # bubblewrap reports {"exit-code": N} only for a command it managed to run
            with contextlib.suppress(asyncio.TimeoutError):
                rest = await asyncio.wait_for(self._status.read(), 1.0)
                self.command_started = b'"exit-code"' in rest
        self._returncode = code
        if self._status_pipe is not None:
            self._status_pipe.close()
        await asyncio.to_thread(self._cleanup)
        return code

    async def stop(self, kill: bool = False, grace: float = 10.0) -> int:
        """SIGTERM every process of the container (SIGKILL with `kill`), SIGKILL after `grace` s; the exit code."""
        if self._returncode is None and self.process.returncode is None:
            if kill:
                self._kill()
            else:
                self._cgroup.signal_all(signal.SIGTERM, exclude=(self.process.pid, self.pid))
        try:
            return await asyncio.wait_for(self.wait(), grace if not kill else None)
        except asyncio.TimeoutError:
            self._kill()
            return await self.wait()

    def _kill(self) -> None:
        # SIGKILL to a pid namespace's init kills every process in the namespace
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Kill the container if it still runs and release everything it holds."""
        await self.stop(kill=True)

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def release(self) -> None:
        """Release what the container holds (mounts, disk, cgroup, network) once its processes are
        gone: what a worker on its way out does for containers it had no time to wait for."""
        self._cleanup()

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        state = self.spec.state_dir
        # the root, and a template's idmapped layers and binds; nothing is deleted while one is left
        # (a layer still mounted below `lowers` would be emptied on the host)
        unmounted = unmount_all_below(state)
        if self._shown is not None and unmount_all_below(self._shown):
            shutil.rmtree(self._shown, ignore_errors=True)
        try:
            self._cgroup.remove()
        except CgroupError as e:  # a process that would not die: keep going, the caller can see why
            self.cleanup_error = str(e)
        if self._netns is not None:
            network.pool().release(self._netns)
        if self._disk is not None and unmounted:
            self._disk.remove()
        if unmounted:
            for name in ("upper", "work", "rootfs", "etc", "lowers", "binds"):
                shutil.rmtree(state / name, ignore_errors=True)

    # -- observation -----------------------------------------------------------------------------

    def stats(self) -> SandboxStats:
        """CPU time and memory of the whole container (final figures once it has exited)."""
        s = self._final or self._cgroup.stats()
        return SandboxStats(s.cpu_seconds, s.memory_bytes, s.memory_peak_bytes, s.oom_kills > 0, s.pids)

    @property
    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this container for exceeding `memory_mb`."""
        return self.stats().oom_killed

    def exit_reason(self, code: int) -> str:
        """The exit in words, naming the memory limit when that is what ended the container."""
        if self.command_started is False:
            return f"could not start its command {self.spec.command[0]!r} (exit {code}; the reason is on its stderr)"
        return describe_exit(code, self.oom_killed, self.spec.memory_mb)

    # -- exec --------------------------------------------------------------------------------------

    async def exec(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                   stdin: int | None = asyncio.subprocess.DEVNULL, stdout: int | None = asyncio.subprocess.PIPE,
                   stderr: int | None = asyncio.subprocess.PIPE, tty: bool = False) -> asyncio.subprocess.Process:
        """Run `argv` in the running container (same namespaces, cgroups, capabilities and seccomp filter).

        For `skylift shell` pass a pty's slave fd as stdin/stdout/stderr with `tty=True`: the command
        gets it as its controlling terminal. The returned process's exit code is the command's
        (128 + N if killed by signal N); signals sent to it are forwarded to the command.
        """
        if self.process.returncode is not None or self._returncode is not None:
            raise SandboxError(f"container {self.spec.task_id} is not running")
        request: dict[str, Any] = {
            "pid": self.pid, "mnt_ns": self._mnt_ns, "cgroup_join": [str(p) for p in self._cgroup.join_files],
            "argv": argv, "env": {**self._env, **(env or {})}, "cwd": cwd or self.spec.cwd, "tty": tty,
        }
        return await enter_container(request, stdin=stdin, stdout=stdout, stderr=stderr)


async def enter_container(request: dict[str, Any], *, stdin: int | None, stdout: int | None,
                          stderr: int | None) -> asyncio.subprocess.Process:
    """Run `enter.py` with `request` ({pid, mnt_ns, cgroup_join, argv, env, cwd, tty}): see its docstring."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", str(_ENTER), json.dumps(request),
        stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True,
    )


def describe_exit(code: int, oom_killed: bool, memory_mb: int | None) -> str:
    """A container's exit in words, naming the memory limit when that is what ended it."""
    if oom_killed and memory_mb is not None:
        return f"exceeded its memory limit of {memory_mb} MiB and was killed (out of memory)"
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def _writable_tmp(rootfs: Path) -> None:
    """/tmp as a sticky, world-writable directory of the root, whatever the image has (its writes land on
    the ephemeral disk as Docker's do; the image's own /tmp files stay, as in Docker)."""
    tmp = rootfs / "tmp"
    if tmp.is_symlink():
        return  # the image points /tmp elsewhere in itself: still the writable layer
    if not tmp.is_dir():
        tmp.mkdir()
    if tmp.stat().st_mode & 0o7777 != 0o1777:
        os.chmod(tmp, 0o1777)


def _shown_dir(name: str) -> Path:
    """A new directory, reachable by any uid, for what a template's bubblewrap (run as userns.BASE) mounts."""
    parent = host.runtime_dir() / "templates"
    parent.mkdir(parents=True, exist_ok=True)
    for directory in (host.runtime_dir(), parent):
        os.chmod(directory, 0o755)
    shown = parent / f"{os.getpid()}-{name}"  # the worker's pid: cleanup_stale knows whose it is
    for directory in (shown, shown / "binds", shown / "etc"):  # whatever the worker's umask
        directory.mkdir(mode=0o755)
        os.chmod(directory, 0o755)
    return shown


def cleanup_stale(state_root: Path | None = None) -> None:
    """Release what a crashed worker left: empty skylift cgroups, its network namespaces and, under
    `state_root` (that worker's scratch directory), overlay mounts — its containers died with it."""
    remove_stale_cgroups()
    network.reap_stale()
    if state_root is not None and state_root.exists():
        unmount_all_below(state_root)
    templates = host.runtime_dir() / "templates"
    for shown in templates.iterdir() if templates.is_dir() else []:
        owner = shown.name.split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists() and unmount_all_below(shown):
            shutil.rmtree(shown, ignore_errors=True)


def _validate(spec: SandboxSpec) -> None:
    """Catch before mounting anything what bubblewrap would otherwise report only on stderr."""
    if not spec.command:
        raise SandboxError("a container needs a command")
    for host_path, container_path, _ in spec.binds:
        if not os.path.exists(host_path):
            raise SandboxError(f"cannot bind {host_path} to {container_path}: {host_path} is missing on the host")
        if not container_path.startswith("/"):
            raise SandboxError(f"bind target {container_path!r} must be an absolute path in the container")
    if not spec.cwd.startswith("/"):
        raise SandboxError(f"cwd {spec.cwd!r} must be an absolute path in the container")


async def _read_status(fd: int) -> tuple[dict[str, Any], asyncio.BaseTransport, asyncio.StreamReader]:
    """bubblewrap's first JSON status line ({"child-pid": …}, or {} if it exits first), the pipe and its reader."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    try:
        line = await asyncio.wait_for(reader.readline(), START_TIMEOUT)
    except BaseException:
        transport.close()
        raise
    try:
        status = json.loads(line) if line.strip() else {}
    except json.JSONDecodeError:
        status = {}
    return (status if isinstance(status, dict) else {}), transport, reader
