"""The seccomp filter every container process runs under, compiled with libseccomp.

A deny-list on top of the capability set (see `capabilities.py`): most of the calls below already fail
without the capability they need, but each is a way into kernel code an ordinary program never uses
(keyrings, eBPF, perf, userfaultfd, io_uring, the new mount API, namespaces), so we refuse them before
the kernel looks further. Calls from any ABI but the native one (i386 via `int 0x80`, x32) kill the
process: the rules are written for native syscall numbers only.

Tracing follows Docker's default profile for a container without CAP_SYS_PTRACE (none holds it):
`ptrace`, `process_vm_readv` and `process_vm_writev` are allowed on kernels >= 4.8 (before, a traced
process could slip past seccomp) and refused below; `kcmp`, `pidfd_getfd` and `process_madvise` are
refused. The kernel's own check then lets a process trace only processes of its uid that hold no
capability it lacks — debuggers and py-spy work on one's own processes, nothing else.

Namespaces: `unshare`, `setns` and namespace flags on `clone` fail with EPERM; `clone3` answers ENOSYS
(its flags live in memory a filter can't read), which makes glibc fall back to `clone`.

A memory-snapshot template (`template=True`) runs under the same filter except that `mount`,
`umount2`, `pivot_root`, `move_mount`, `setns` and `unshare` without CLONE_NEWUSER are let through: the
containers it forks use them to become containers (docs/cold-starts.md), with the CAP_SYS_ADMIN the
template holds in its own user namespace (whose root is an unprivileged host uid); each forked child
loads the full filter before any of its code runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import re
from pathlib import Path

from ..._libc import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)

DENIED_SYSCALLS = (
    # kernel modules, rebooting, swap, accounting, time: host-wide state
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "quotactl", "quotactl_fd", "syslog", "vhangup", "iopl", "ioperm", "lookup_dcookie", "uselib",
    "ustat", "sysfs", "_sysctl", "nfsservctl",
    # the kernel's keyrings are not namespaced
    "add_key", "request_key", "keyctl",
    # eBPF, perf, userfaultfd and io_uring: frequent sources of kernel exploits
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    # mounts and namespaces: the sandbox's shape is fixed once it starts
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "unshare", "setns",
    # file handles bypass path-based checks (the "shocker" escape)
    "name_to_handle_at", "open_by_handle_at",
    # Docker allows these only with CAP_SYS_PTRACE: another process's fds, memory advice, kernel pointers
    "kcmp", "pidfd_getfd", "process_madvise",
)
# Docker's default profile allows these from kernel 4.8 (includes.minKernel), when seccomp started to
# re-check a traced process's system calls after the tracer changed them.
TRACING_SYSCALLS = ("ptrace", "process_vm_readv", "process_vm_writev")
TRACING_MIN_KERNEL = (4, 8)

# What a forked container needs to become one (see the module docstring).
TEMPLATE_ALLOWED = frozenset({"mount", "umount2", "pivot_root", "move_mount", "setns", "unshare"})

_NAMESPACE_FLAGS = (
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
)
_TIOCSTI = 0x5412  # push bytes into a terminal's input: a way out of a shared tty
_TIOCLINUX = 0x541C

_ACT_ALLOW = 0x7FFF0000
_CMP_EQ = 4
_CMP_MASKED_EQ = 7


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


class SeccompUnavailable(RuntimeError):
    pass


def _load_library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        name = ctypes.util.find_library("seccomp")
        if name is None:
            raise SeccompUnavailable("libseccomp is missing; install the Debian package libseccomp2") from None
        lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    return lib


def tracing_allowed(release: str) -> bool:
    """Whether a kernel of this `uname -r` release lets containers trace (Docker's minKernel 4.8).

    Example:
        >>> tracing_allowed("6.1.0-18-amd64"), tracing_allowed("4.8.0"), tracing_allowed("4.4.0-210-generic")
        (True, True, False)
    """
    numbers = re.findall(r"\d+", release)[:2]
    return tuple(int(n) for n in numbers) >= TRACING_MIN_KERNEL if len(numbers) == 2 else False


def _build(lib: ctypes.CDLL, template: bool = False) -> int:
    ctx: int | None = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")

    def rule(action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return  # not a syscall on this architecture
        array = (_ArgCmp * max(1, len(cmps)))(*[_ArgCmp(*c) for c in cmps])
        rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array)
        if rc != 0:
            raise SeccompUnavailable(f"seccomp rule for {name} failed: {os.strerror(-rc)}")

    for name in DENIED_SYSCALLS:
        if not (template and name in TEMPLATE_ALLOWED):
            rule(_act_errno(errno.EPERM), name)
    if not tracing_allowed(os.uname().release):
        for name in TRACING_SYSCALLS:
            rule(_act_errno(errno.EPERM), name)
    if template:
        rule(_act_errno(errno.EPERM), "unshare", (0, _CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    for flag in _NAMESPACE_FLAGS:
        rule(_act_errno(errno.EPERM), "clone", (0, _CMP_MASKED_EQ, flag, flag))
    rule(_act_errno(errno.ENOSYS), "clone3")
    for request in (_TIOCSTI, _TIOCLINUX):
        rule(_act_errno(errno.EPERM), "ioctl", (1, _CMP_MASKED_EQ, 0xFFFFFFFF, request))
    return ctx


class Filter:
    """The compiled filter, ready to load into this process or to export as BPF."""

    def __init__(self, template: bool = False) -> None:
        self._lib = _load_library()
        self._ctx = _build(self._lib, template)

    def load(self) -> None:
        """Install the filter on the calling process (libseccomp sets no_new_privs first, as required).

        Uses only what `__init__` prepared: safe to call after entering a container's mount namespace.
        """
        rc = self._lib.seccomp_load(self._ctx)
        if rc != 0:
            raise OSError(-rc, "seccomp_load failed")

    def export_bpf(self, fd: int) -> None:
        rc = self._lib.seccomp_export_bpf(self._ctx, fd)
        if rc != 0:
            raise SeccompUnavailable(f"seccomp_export_bpf failed: {os.strerror(-rc)}")

    def release(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = 0


_compiled: dict[tuple[Path, bool], Path] = {}


def compiled_filter(directory: Path, template: bool = False) -> Path:
    """The filter as raw BPF (what `bwrap --seccomp FD` reads), written once under `directory`."""
    if (directory, template) in _compiled:
        return _compiled[(directory, template)]
    compiled = Filter(template)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".seccomp.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            compiled.export_bpf(fd)
        finally:
            os.close(fd)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]
        path = directory / f"seccomp-{digest}.bpf"
        os.replace(tmp, path)
    finally:
        compiled.release()
        tmp.unlink(missing_ok=True)
    _compiled[(directory, template)] = path
    return path
