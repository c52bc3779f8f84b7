"""What a container forked from a memory-snapshot template does before it is a container.

The child starts as a copy of the template: user code imported, `snap=True` hooks run, and
everything else of the template's too. `become` turns it into its own container, then runs the
ordinary container life (`entrypoint.run`) from `container.init` on, with the service already
loaded:

* its own session and process group (signals and `stop` reach it and its children only), and it
  dies with the template (`PR_SET_PDEATHSIG`): a template only exits after its children, so this
  fires only if the template is killed;
* the template's fds closed (its socket to the worker, its wakeup pipe); stdin is /dev/null,
  stdout and stderr are the pipes the worker sent for this container;
* the container's own environment (task id, token, GPUs), working directory and cgroups, and
  its volumes bound at their paths in a mount namespace of its own (`binds`, as the process
  runtime's `process_binds` does for a container it starts); on the container runtime, its own
  namespaces, root filesystem, capabilities and seccomp filter (`fork_container`);
* fresh randomness (`random`; numpy's global generator when numpy is loaded), and the SDK's
  cached client and app layout forgotten, so nothing of the template's identity is used;
* then it connects to the control plane with its own token and runs `@enter(snap=False)`.

It never returns: the process ends with `os._exit`, after the user's atexit handlers on a clean
exit, so the template's stack below it never runs again.

A pre-forked spare (`become_spare`, the container runtime) does the same in two steps: everything up
to the lock-down and the runtime's fork before any task exists, then, once the worker activates it,
what is the task's own (environment, stdio, working directory, fresh randomness) and the run.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import random
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .. import _client, _container_layout
from .._protocol import forkserver
from . import entrypoint, fork_container, user_code
from .profile import StartProfile

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18


@dataclass
class Inheritance:
    """What the template hands to one child at fork time."""

    message: dict[str, Any]
    fds: list[int]  # the write ends of this container's stdout and stderr pipes, then `container`'s fds
    close_fds: list[int]  # the template's own fds
    service: user_code.Service | None  # None: a preloaded interpreter, the child loads the function itself
    definition: dict[str, Any]
    snapshot_times: dict[str, float] = field(default_factory=dict)
    forked_at: float = 0.0  # perf_counter() just before fork()
    template_pid: int = 0


def become(inherited: Inheritance) -> NoReturn:
    def start() -> int:
        _detach(inherited)
        _adopt(inherited)
        return _run(inherited)
    _exit_with(start)


def _exit_with(body: Callable[[], int]) -> NoReturn:
    """Run a forked child's `body` and leave with its exit code (1 for what it didn't catch);
    never returns into the template's code."""
    code = 1
    try:
        code = body()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
        code = 1
    finally:
        _flush()
        os._exit(code)


def become_spare(inherited: Inheritance, channel: int) -> NoReturn:
    """A pre-forked spare (container runtime): become a container now, wait for a task, then run as `become`.

    Everything `fork_container.enter` does (cgroups, network, namespaces, root filesystem, lock-down,
    the runtime's fork) happens before any task exists; the template's `activate` then sends, on
    `channel`, what is the task's own: its environment (id, token), working directory, stdout and
    stderr. Until then nothing of the user's runs here (no hook, no input); EOF on `channel` means
    the spare was dropped, and it exits.
    """
    def start() -> int:
        inherited.fds = [-1, -1, *inherited.fds]  # (fork_container numbers a request's fds from 2)
        _detach(inherited, spare_channel=channel)
        _reset_signals()
        with socket.socket(fileno=channel) as waiting:  # closed once read: nothing after this inherits it
            message, fds = forkserver.recv(waiting)
        if message is None:
            os._exit(0)
        activated_at = time.perf_counter()
        inherited.message, inherited.fds = message, fds
        inherited.forked_at = activated_at - max(0.0, time.time() - float(message.get("requested_at") or 0.0))
        _adopt(inherited)
        return _run(inherited)
    _exit_with(start)


def _run(inherited: Inheritance) -> int:
    """The container's life from `container.init` on; returns its exit code."""
    code = 1
    try:
        if inherited.service is None:  # a preloaded interpreter: the ordinary start, minus booting Python
            sys.argv = [arg for arg in sys.argv if arg != "--template"]  # as `python -m skylift._runtime` has it
            code = asyncio.run(entrypoint.run())  # (its profile's boot: from the worker's request to here)
        else:
            profile = StartProfile(how="fork", snapshot=dict(inherited.snapshot_times))
            profile.phases["fork_ms"] = (time.perf_counter() - inherited.forked_at) * 1000
            preloaded = entrypoint.Preloaded(inherited.service, inherited.definition, profile)
            code = asyncio.run(entrypoint.run(preloaded))
        _flush()
        if code == 0 and entrypoint._wait_for_user_threads():
            atexit._run_exitfuncs()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code


def _detach(inherited: Inheritance, spare_channel: int | None = None) -> None:
    """Leave the template: its fds closed, a session of its own, dying with it; on the container runtime
    a container of its own (returns in its runtime process)."""
    for fd in inherited.close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    os.setsid()
    _die_with_parent(inherited.template_pid)
    container = inherited.message.get("container")
    if container:  # the container runtime: namespaces, root filesystem, lock-down
        fork_container.enter(container, inherited.fds, spare_channel)


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _adopt(inherited: Inheritance) -> None:
    """Take on the task: its stdio, cgroups (process runtime), volumes, environment, cwd; fresh randomness."""
    message = inherited.message
    _reset_signals()
    stdout, stderr = inherited.fds[:2]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    for fd in {null, stdout, stderr} - {0, 1, 2}:
        os.close(fd)
    for procs in message.get("cgroup_procs") or []:
        # The container runtime's seam: join this container's cgroups (the template's are shared).
        with open(procs, "w") as f:
            f.write("0")
    binds = message.get("binds") or []
    if binds:
        _bind_mounts(binds)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in message["env"].items()})
    cwd = message.get("cwd")
    if cwd:
        os.chdir(cwd)
    _reseed()
    _forget_sdk_state()


def _die_with_parent(template_pid: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if template_pid and os.getppid() != template_pid:  # it died before prctl took effect
        os._exit(137)


def _bind_mounts(binds: list[list[Any]]) -> None:
    """Show each host dir at its container path, in a private mount namespace (root only)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    for host, path, read_only in binds:
        os.makedirs(path, exist_ok=True)
        check(libc.mount(os.fsencode(host), os.fsencode(path), None, MS_BIND, None), f"binding {host} at {path}")
        if read_only:
            check(libc.mount(None, os.fsencode(path), None, MS_BIND | MS_REMOUNT | MS_RDONLY, None),
                  f"making {path} read-only")


def _reseed() -> None:
    # `random` re-seeds itself after fork (os.register_at_fork); numpy's legacy global generator
    # does not, and a snapshot that froze it would give every container the same numbers. Only
    # if the template loaded numpy.random: numpy imports it lazily (~10 ms), and one imported
    # after the fork seeds itself.
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):
            numpy_random.seed()


def _forget_sdk_state() -> None:
    _client._default_client = None
    _container_layout._layout = None
    _container_layout._lock = None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
