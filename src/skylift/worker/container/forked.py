"""The worker's side of a container forked from a memory-snapshot template (docs/cold-starts.md).

    forked = ForkedSandbox.prepare(task_id, layers_dir, cpu=1.0, memory_mb=512, block_network=False)
    message, fds = forked.request()      # the fork request's `container` part, and its fds
    ...                                  # the template forks; the child sets itself up (_runtime/fork_container)
    forked.close_fds()                   # once sent
    forked.signal_all(SIGTERM); forked.stats(); await forked.exec(argv, ...)
    forked.cleanup()                     # after it exited: cgroups, network namespace, writable layer

Like a `Sandbox` it has its own cgroups (limits, stats, OOM kills), network namespace (from the fork
pool, whose namespaces belong to the forks' user namespace) and writable layer (`layers_dir`, which
the template's sandbox shows at FORK_LAYERS/<task id>; with `disk_mb`, the child mounts its ephemeral
disk there first — made by the worker in the task's state directory, passed as a detached idmapped
mount — so the layer is bounded as a `Sandbox`'s is, and its /tmp is a tmpfs of that size).
What differs is who makes the namespaces and mounts them: the child itself, from inside the
template's sandbox, as the root of the forks' user namespace — an unprivileged host uid (userns.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from ... import _libc
from . import host, network, policy, seccomp
from .bwrap import FORK_LAYERS, FORK_ROOT
from .cgroups import Cgroup, CgroupLimits
from .disk import EphemeralDisk, ephemeral_disk
from .errors import SandboxError
from .sandbox import DEFAULT_PIDS_MAX, SandboxStats, cgroup_name, describe_exit, enter_container
from .userns import fork_userns

_FORK_DIR = str(Path(FORK_ROOT).parent)
SPARE_CPU_REQUEST = 1e-6  # cores: the least CPU share (cpu.shares 2, cpu.weight 1) while a spare is made


class ForkedSandbox:
    def __init__(self, task_id: str, layers_dir: Path, cgroup: Cgroup, netns: network.Netns | None,
                 memory_mb: int | None, binds: list[tuple[str, str, bool]] | None = None,
                 disk_mb: int | None = None, disk: EphemeralDisk | None = None) -> None:
        self.task_id = task_id
        self.disk_mb = disk_mb  # its ephemeral disk: the size of its /tmp tmpfs, and of `disk` if one was made
        self._disk = disk
        self.binds = list(binds or [])  # (host path, container path, read_only): volumes, bucket mounts
        self.layers_dir = layers_dir
        self.memory_mb = memory_mb
        self._cgroup = cgroup
        self._netns = netns
        self._fds: list[int] = []
        self._final: SandboxStats | None = None
        self.own_dir: Path | None = None  # a spare's state directory (its disk's), removed with it
        self._cpu_request: float | None = SPARE_CPU_REQUEST  # a spare's own, given at `activate`

    @classmethod
    def prepare(cls, task_id: str, layers_dir: Path, *, cpu: float | None, memory_mb: int | None,
                block_network: bool, binds: list[tuple[str, str, bool]] | None = None,
                cpu_request: float | None = None, disk_mb: int | None = None,
                state_dir: Path | None = None, cgroup_group: str = "", spare: bool = False) -> ForkedSandbox:
        """`state_dir`: where its ephemeral disk of `disk_mb` MiB is made (as a `Sandbox`'s: the worker's
        crash cleanup unmounts what is left there); without it, only /tmp is bounded. `cgroup_group`:
        the worker's own cgroup tree, reaped at its start (reap.py). `spare`: for a pre-forked spare, whose
        set-up gets the least share of contended CPUs until `activate` gives it its request."""
        cgroup = Cgroup(cgroup_name(task_id), group=cgroup_group)
        netns: network.Netns | None = None
        disk: EphemeralDisk | None = None
        try:
            if disk_mb is not None and state_dir is not None:
                disk = ephemeral_disk(state_dir, disk_mb)
            # (a spare is made while the container forked before it connects: it mustn't slow that one down)
            cgroup.create(CgroupLimits(cpu, memory_mb, DEFAULT_PIDS_MAX,
                                       cpu_request=SPARE_CPU_REQUEST if spare else cpu_request))
            if not block_network:
                pool = network.fork_pool()
                netns = pool.try_acquire() or pool.acquire()
            forked = cls(task_id, layers_dir, cgroup, netns, memory_mb, binds, disk_mb, disk)
            forked._cpu_request = cpu_request if spare else SPARE_CPU_REQUEST
            forked._open_fds()
        except BaseException:
            if disk is not None:
                disk.remove()
            with contextlib.suppress(Exception):
                cgroup.remove()
            if netns is not None:
                network.fork_pool().release(netns)
            raise
        return forked

    def _open_fds(self) -> None:
        if self._netns is not None:
            self._fds.append(os.open(self._netns.path, os.O_RDONLY | os.O_CLOEXEC))
        for path in self._cgroup.join_files:
            self._fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
        for host_dir, _ in self._cgroup.visible_dirs:  # its own cgroups at /sys/fs/cgroup, read-only
            self._fds.append(_libc.open_tree(str(host_dir)))
        if self.binds or self._disk is not None:
            # detached, idmapped bind mounts: the child attaches them in its own mount namespace, and
            # its root (an unprivileged host uid) owns what the host's root owns there
            userns_fd = fork_userns().open()
            try:
                for host_path, _, _ in self.binds:
                    self._fds.append(_libc.open_tree_idmapped(host_path, userns_fd))
                if self._disk is not None:
                    self._fds.append(_libc.open_tree_idmapped(str(self._disk.mountpoint), userns_fd))
            finally:
                os.close(userns_fd)

    def request(self, first_fd: int = 2) -> tuple[dict[str, Any], list[int]]:
        """The fork request's `container` entry and the fds it names (numbered from `first_fd`)."""
        netns = first_fd if self._netns is not None else None
        cgroups_from = first_fd + (1 if self._netns is not None else 0)
        views_from = cgroups_from + len(self._cgroup.join_files)
        views = self._cgroup.visible_dirs
        binds_from = views_from + len(views)
        disk = binds_from + len(self.binds) if self._disk is not None else None
        message = {
            "fds": {"netns": netns, "cgroups": list(range(cgroups_from, views_from))},
            "cgroup_views": [[views_from + i, name] for i, (_, name) in enumerate(views)],
            "binds": [[binds_from + i, path, read_only] for i, (_, path, read_only) in enumerate(self.binds)],
            "lower": FORK_ROOT, "layers": f"{FORK_LAYERS}/{self.task_id}", "fork_dir": _FORK_DIR,
            "disk": disk, "tmp_mb": self.disk_mb,
            "hostname": "skylift", "capabilities": sorted(policy.CAPABILITIES.values()),
            "seccomp": seccomp.compiled_filter(host.runtime_dir()).read_bytes(),
            "read_only_proc_dirs": list(policy.READ_ONLY_PROC_DIRS),
            "masked_proc_files": list(policy.MASKED_PROC_FILES), "masked_proc_dirs": list(policy.MASKED_PROC_DIRS),
        }
        return message, list(self._fds)

    def activate(self) -> None:
        """A spare's container is starting: its CPU share is its request's from now on."""
        if self._cpu_request != SPARE_CPU_REQUEST:
            with contextlib.suppress(OSError):
                self._cgroup.set_cpu_request(self._cpu_request)
            self._cpu_request = SPARE_CPU_REQUEST

    def close_fds(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    # -- a running container -------------------------------------------------------------------

    def init_pid(self) -> int | None:
        """The host pid of the container's pid 1 (the runtime), or None when it is gone."""
        for pid in self._cgroup.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    nspids = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
            except OSError:
                continue
            if len(nspids) > 1 and nspids[-1] == "1":
                return pid
        return None

    def signal_all(self, sig: int) -> None:
        self._cgroup.signal_all(sig)

    def stats(self) -> SandboxStats:
        if self._final is not None:
            return self._final
        s = self._cgroup.stats()
        return SandboxStats(s.cpu_seconds, s.memory_bytes, s.memory_peak_bytes, s.oom_kills > 0, s.pids)

    def exit_reason(self, code: int) -> str:
        return describe_exit(code, self.stats().oom_killed, self.memory_mb)

    async def exec(self, argv: list[str], env: dict[str, str], cwd: str, *,
                   stdin: int | None = asyncio.subprocess.DEVNULL, stdout: int | None = asyncio.subprocess.PIPE,
                   stderr: int | None = asyncio.subprocess.PIPE, tty: bool = False) -> asyncio.subprocess.Process:
        """Run `argv` in the container, as `Sandbox.exec` does."""
        pid = self.init_pid()
        if pid is None:
            raise SandboxError(f"container {self.task_id} is not running")
        request = {"pid": pid, "mnt_ns": None, "cgroup_join": [str(p) for p in self._cgroup.join_files],
                   "argv": argv, "env": env, "cwd": cwd, "tty": tty}
        return await enter_container(request, stdin=stdin, stdout=stdout, stderr=stderr)

    def cleanup(self) -> None:
        """After the container exited: kill what is left, then free its cgroups, network and layer."""
        self.close_fds()
        if self._final is None:
            self._final = self.stats()
        self._cgroup.signal_all(signal.SIGKILL)
        with contextlib.suppress(Exception):
            self._cgroup.remove()
        if self._netns is not None:
            network.fork_pool().release(self._netns)
            self._netns = None
        shutil.rmtree(self.layers_dir, ignore_errors=True)
        if self._disk is not None:  # the child's mount of it died with its mount namespace
            self._disk.remove()
            self._disk = None
        if self.own_dir is not None:
            shutil.rmtree(self.own_dir, ignore_errors=True)
