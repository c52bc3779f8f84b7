"""Run a command inside a running container: `python -I -S enter.py REQUEST_JSON` (used by `Sandbox.exec`).

The exec'd process ends up exactly like the container's own: in its cgroups and pid, ipc, uts, net,
cgroup and mount namespaces, with the same capabilities, no_new_privs and seccomp filter.

This helper runs the host's Python with root's full capabilities, so it must never execute code from the
container's filesystem: only the forked child enters the mount namespace, everything it runs afterwards
is already imported, and it is non-dumpable (no ptrace, no /proc/PID/exe) until it execs the command.
It runs as a script with `-I -S`, without importing skylift, to start in ~15 ms.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import signal
import sys
import termios
import types

if __package__ in (None, ""):
    # loaded as a script: make skylift's modules importable without running skylift's __init__ (a
    # package of the same shape whose parts are empty modules, so relative imports still resolve)
    _here = os.path.dirname(os.path.abspath(__file__))
    for _name, _path in (("_sk", os.path.dirname(os.path.dirname(_here))), ("_sk.worker", os.path.dirname(_here)),
                         ("_sk.worker.container", _here)):
        _pkg = types.ModuleType(_name)
        _pkg.__path__ = [_path]
        sys.modules[_name] = _pkg
    _cgroups = importlib.import_module("_sk.worker.container.cgroups")
    _libc = importlib.import_module("_sk._libc")
    _policy = importlib.import_module("_sk.worker.container.policy")
    _seccomp = importlib.import_module("_sk.worker.container.seccomp")
else:
    from ... import _libc
    from . import cgroups as _cgroups
    from . import policy as _policy
    from . import seccomp as _seccomp

_NAMESPACES = (("ipc", _libc.CLONE_NEWIPC), ("uts", _libc.CLONE_NEWUTS), ("net", _libc.CLONE_NEWNET),
               ("cgroup", _libc.CLONE_NEWCGROUP), ("pid", _libc.CLONE_NEWPID))


def _fail(message: str, code: int = 126) -> None:
    os.write(2, f"skylift exec: {message}\n".encode())
    os._exit(code)


def main(argv: list[str]) -> None:
    request = json.loads(argv[1])
    pid = int(request["pid"])
    _libc.prctl(_libc.PR_SET_DUMPABLE, 0)
    try:
        mnt_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        if request.get("mnt_ns") and os.fstat(mnt_fd).st_ino != int(request["mnt_ns"]):
            _fail(f"process {pid} is no longer the container's init")
        ns_fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag) for name, flag in _NAMESPACES]
        user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        _fail("the container is not running")
    for path in request["cgroup_join"]:
        with open(path, "w") as f:
            f.write(_cgroups.join_value(path, os.getpid()))
    # A container forked from a snapshot lives in a user namespace whose root is an unprivileged host
    # uid: the command joins it and becomes that root, as the container's own processes are.
    joins_user = os.fstat(user_fd).st_ino != os.stat("/proc/self/ns/user").st_ino
    if joins_user:
        _libc.setns(user_fd, _libc.CLONE_NEWUSER)
    os.close(user_fd)
    for fd, flag in ns_fds:
        _libc.setns(fd, flag)
        os.close(fd)
    keep = set(_policy.CAPABILITIES.values())
    env = {str(k): str(v) for k, v in request["env"].items()}
    command = [str(a) for a in request["argv"]]
    cwd = str(request.get("cwd") or "/")
    tty = bool(request.get("tty"))
    last_cap = _libc.last_cap()
    seccomp_filter = _seccomp.Filter()  # prepared here: nothing may be loaded from inside the container

    child = os.fork()
    if child == 0:
        try:
            _libc.setns(mnt_fd, _libc.CLONE_NEWNS)  # also moves root and cwd to the container's root
            try:
                os.chdir(cwd)
            except OSError:
                os.chdir("/")
            if joins_user:
                os.setgroups([])
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
            if tty:  # a shell on a pty: its own session, the pty as controlling terminal (job control, ^C)
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            _libc.limit_capabilities(keep, last_cap)
            _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1)
            seccomp_filter.load()
            os.execvpe(command[0], command, env)
        except FileNotFoundError:
            _fail(f"{command[0]}: command not found", 127)
        except BaseException as e:
            _fail(f"{command[0]}: {e}")
    os.close(mnt_fd)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    sys.exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    main(sys.argv)
