"""How a child forked from a template in a container becomes a container of its own.

On the `container` runtime a memory-snapshot template runs in a sandbox of its own (see
`worker/container/bwrap.py`, FORK_ROOT), as the root of a user namespace whose root is an
unprivileged host uid (`worker/container/userns.py`), holding CAP_SYS_ADMIN there. Each fork
request carries, besides the child's stdout and stderr, an fd of a network namespace ready for it
(unless `block_network`), its cgroup files opened for writing and its volumes as detached mounts.
The child (C, still in the template's namespaces):

1. joins its cgroups and the network namespace, and unshares mount, ipc, uts, pid and cgroup
   namespaces;
2. forks G, pid 1 of the new pid namespace, and stays as its parent: it forwards SIGTERM/SIGINT
   and exits with G's code, which is what the template reports to the worker. G sets the
   container up (below), then forks the runtime (pid 2) and stays as the container's init,
   reaping orphans and passing signals on, and exits with the runtime's code.

G then builds its root filesystem: a fresh overlay whose lower layer is the template's root
filesystem (with whatever the snapshot wrote to it) and whose writable layer is its own
(`<FORK_LAYERS>/<task id>`), the template's other mounts carried over (/dev, /sys, /etc files, the
runtime and control-plane binds), its volumes (detached mounts the worker made with `open_tree`,
sent as fds), a private /tmp, /dev/shm and /dev/pts, a new /proc with the
container masks, and `pivot_root` into it. Last, before any of its own code runs, it sets its
hostname, drops to the container's capabilities, sets no_new_privs and loads the container's full
seccomp filter. What to mask, which capabilities to keep and the filter come from the worker in the
request, so the policy lives in one place (`worker/container/policy.py`, `seccomp.py`).

A pre-forked spare (`fork_child.become_spare`) runs all of this before it has a task: the fds come
with the template's `spare` request, and only its runtime process keeps the socket it is activated on.

This code runs in an interpreter the user's imports ran in first, so it is not what keeps the host
safe: a child that skipped all of it would still be an unprivileged host uid in namespaces of its
own user namespace. It is what makes a forked container the same as any other container.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
from typing import Any, NoReturn

from .. import _libc

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_NAMESPACES = (_libc.CLONE_NEWNS | _libc.CLONE_NEWIPC | _libc.CLONE_NEWUTS | _libc.CLONE_NEWPID
               | _libc.CLONE_NEWCGROUP)


def enter(spec: dict[str, Any], fds: list[int], spare_channel: int | None = None) -> None:
    """Called in the forked child; returns in the container's runtime process, pid 2 (the others never do).

    `spare_channel`: a pre-forked spare's socket to the template, kept by the runtime process only.
    """
    layout = spec["fds"]
    binds = [(fds[index], path, read_only) for index, path, read_only in spec.get("binds") or []]
    views = [(fds[index], str(name)) for index, name in spec.get("cgroup_views") or []]
    for index in layout["cgroups"]:
        os.write(fds[index], b"0")  # this process (and so every process it starts)
    flags = _NAMESPACES
    if layout.get("netns") is None:
        flags |= _libc.CLONE_NEWNET  # block_network: loopback only
    else:
        _libc.setns(fds[layout["netns"]], _libc.CLONE_NEWNET)
    _libc.unshare(flags)
    disk = fds[spec["disk"]] if spec.get("disk") is not None else None  # its ephemeral disk, detached
    bind_fds = {fd for fd, _, _ in binds} | {fd for fd, _ in views} | ({disk} if disk is not None else set())
    for fd in fds[2:]:
        if fd not in bind_fds:
            os.close(fd)
    del fds[2:]
    pid = os.fork()
    if pid:
        _parent(pid, spare_channel)
    # (if C is killed first, G goes with it anyway: both are in the container's cgroup, and the
    # template's sandbox takes every process below it when it ends)
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if flags & _libc.CLONE_NEWNET:
        _loopback_up()
    _build_root(spec, binds, views, disk)
    _libc.sethostname(spec["hostname"])
    _lock_down(spec)
    # G stays as the container's init, reaping orphans and passing signals on (as bubblewrap's
    # pid 1 does for other containers); the runtime goes on in its child, pid 2.
    pid = os.fork()
    if pid:
        _parent(pid, spare_channel)
    _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)


def _parent(pid: int, spare_channel: int | None = None) -> NoReturn:
    """Wait for `pid`, reaping any other child meanwhile and passing stop signals on; exit with its code.

    C does this for the container's init G, and G for the runtime (and for orphans, which the
    kernel hands to a pid namespace's init).
    """
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    if spare_channel is not None:
        with contextlib.suppress(OSError):
            os.close(spare_channel)
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        done, status = os.waitpid(-1, 0)
        if done == pid:
            break
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))


def mounts_to_carry(mount_points: list[str], skip_below: str) -> list[str]:
    """The template's mount points a forked container binds again (recursively) into its new root.

    Example:
        >>> mounts_to_carry(["/", "/proc", "/proc/sys", "/dev", "/dev/shm", "/tmp", "/etc/hosts",
        ...                  "/run/skylift-fork/root", "/opt/rt/skylift"], "/run/skylift-fork")
        ['/dev', '/etc/hosts', '/opt/rt/skylift']
    """
    chosen: list[str] = []
    for point in sorted(set(mount_points)):
        if point == "/" or _below(point, skip_below) or any(_below(point, p) for p in ("/proc", "/tmp")):
            continue
        if not any(_below(point, parent) for parent in chosen):
            chosen.append(point)
    return chosen


_carried: dict[str, list[str]] = {}


def carried_mounts(fork_dir: str) -> list[str]:
    """`mounts_to_carry` of this process's mount table, read once: the template calls it before its first fork,
    so each child inherits the list instead of reading /proc/self/mountinfo again (no code of the template
    runs between forks, so its mount table is the same for every child)."""
    if fork_dir not in _carried:
        _carried[fork_dir] = mounts_to_carry(_mount_points(), fork_dir)
    return _carried[fork_dir]


def _below(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            field = line.split()[4]
            points.append(field.encode().decode("unicode_escape"))
    return points


def _build_root(spec: dict[str, Any], binds: list[tuple[int, str, bool]], views: list[tuple[int, str]],
                disk: int | None = None) -> None:
    mount, bind_rec = _libc.mount, _libc.MS_BIND | _libc.MS_REC
    nosuid_nodev = _libc.MS_NOSUID | _libc.MS_NODEV
    mount(None, "/", None, _libc.MS_REC | _libc.MS_PRIVATE)
    layers = spec["layers"]
    if disk is not None:  # the writable layer on the bounded disk (in this namespace only: "/" is private now)
        os.makedirs(layers, exist_ok=True)
        _libc.move_mount(disk, layers)
        os.close(disk)
    root = f"{layers}/root"
    for name in ("upper", "work", "root"):
        os.makedirs(f"{layers}/{name}", exist_ok=True)
    mount("overlay", root, "overlay", nosuid_nodev,
          f"lowerdir={spec['lower']},upperdir={layers}/upper,workdir={layers}/work,userxattr")
    for point in carried_mounts(spec["fork_dir"]):
        mount(point, root + point, None, bind_rec)
    for fd, path, read_only in binds:  # volumes and bucket mounts: detached mounts the worker made
        os.makedirs(root + path, exist_ok=True)
        _libc.move_mount(fd, root + path)
        os.close(fd)
        if read_only:
            mount(None, root + path, None, _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY | nosuid_nodev)
    tmp_mb = spec.get("tmp_mb")  # /tmp is bounded by the ephemeral disk (and, as RAM, by the memory limit)
    for point in ("/tmp", "/dev/shm"):
        if os.path.isdir(root + point):
            size = f",size={int(tmp_mb)}m" if tmp_mb and point == "/tmp" else ""
            mount("tmpfs", root + point, "tmpfs", nosuid_nodev, "mode=1777" + size)
    if os.path.isdir(root + "/dev/pts"):
        mount("devpts", root + "/dev/pts", "devpts", _libc.MS_NOSUID | _libc.MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=620")
    if os.path.isdir(root + "/sys/fs/cgroup"):  # its own cgroups, read-only, instead of the template's
        _cgroup_views(root + "/sys/fs/cgroup", views, nosuid_nodev)
    proc = root + "/proc"
    proc_flags = nosuid_nodev | _libc.MS_NOEXEC
    mount("proc", proc, "proc", proc_flags)
    for path in spec["read_only_proc_dirs"]:
        if os.path.isdir(root + path):
            mount(root + path, root + path, None, bind_rec)
            mount(None, root + path, None, _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY | proc_flags)
    for path in spec["masked_proc_files"]:
        if os.path.exists(root + path):
            mount(root + "/dev/null", root + path, None, _libc.MS_BIND)
    for path in spec["masked_proc_dirs"]:
        if os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", proc_flags | _libc.MS_RDONLY, "size=0")
    old = root + spec["lower"]  # an empty directory in the new root
    _libc.pivot_root(root, old)
    os.chdir("/")
    _libc.umount(spec["lower"], _libc.MNT_DETACH)


def _cgroup_views(target: str, views: list[tuple[int, str]], flags: int) -> None:
    """/sys/fs/cgroup as a container's: each hierarchy's directory of its own cgroup (v1), or the one (v2)."""
    read_only = _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY | flags
    _libc.mount("tmpfs", target, "tmpfs", flags, "mode=755")
    for fd, name in views:
        path = f"{target}/{name}" if name else target
        os.makedirs(path, exist_ok=True)
        _libc.move_mount(fd, path)
        os.close(fd)
        _libc.mount(None, path, None, read_only)
    if all(name for _, name in views):
        _libc.mount(None, target, None, _libc.MS_REMOUNT | _libc.MS_RDONLY | flags, "mode=755")


def _lock_down(spec: dict[str, Any]) -> None:
    _libc.limit_capabilities({int(c) for c in spec["capabilities"]}, _libc.last_cap())
    _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
    _libc.load_seccomp_bpf(bytes(spec["seccomp"]))
    _libc.prctl(_libc.PR_SET_DUMPABLE, 1)  # the template is not; a container's own tools may inspect it
