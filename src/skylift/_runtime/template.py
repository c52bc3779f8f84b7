"""A memory-snapshot template: `python -m skylift._runtime --template` (docs/cold-starts.md).

The worker starts one per snapshot key (image, function version, Cls parameters, environment)
with the definition in a file (`ENV_TEMPLATE_SPEC`) and one end of a socket pair
(`ENV_TEMPLATE_FD`). The template

1. imports the user's code and runs the `@enter(snap=True)` hooks, without ever talking to the
   control plane (it has no token: it is nobody's container);
2. checks that a fork can't leak anything: no other Python thread, no open socket, no GPU
   mapping. If one is found it refuses, with the reason, and the worker starts this pool's
   containers the ordinary way (Modal documents the same limits for its snapshots);
3. freezes the garbage collector's view of what it loaded (`gc.freeze()`: children don't touch,
   so don't copy, those pages), says `ready` and then forks one container per request
   (`fork_child.become`). It reaps its children and reports their exit codes.

A template without a definition is a *preloaded interpreter* (the worker's fast path for any
container of the process runtime, `worker/snapshot_runtime.py`): step 1 imports only the runtime
and the SDK, and each child loads the function itself after it has connected, as a new process
does — so a cold start skips booting Python and importing skylift, and nothing of one container's
code is in another's.

On the container runtime it also forks, on the worker's request, one *pre-forked spare* at a time:
a child set up as a container ahead (`fork_child.become_spare`), which the worker activates directly
on the socket handed over with `spared` (`worker/spares.py`).

It never runs inputs itself. It exits once told to retire (or when the worker goes away) and its
last child has exited, so the containers it forked keep their parent.
"""

from __future__ import annotations

import asyncio
import gc
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import msgpack

from .. import _libc
from .._protocol import forkserver
from .._serialization import decode_params
from . import fork_child, fork_container, user_code

# What a preloaded interpreter imports: what every container's runtime and a user's `import skylift as modal`
# + `modal.App(...)`, `modal.Image...`, `@app.function()` load (each child still imports the user's module).
PRELOAD_MODULES = ("skylift._runtime.entrypoint", "skylift._runtime.inputs", "skylift.app", "skylift.image",
                   "skylift.cls", "skylift.functions", "skylift.partial_function", "skylift.volume", "skylift.secret",
                   "skylift.cloud_bucket_mount", "skylift.retries", "skylift.schedule", "skylift.web",
                   "skylift._attachments")


def preload() -> None:
    import importlib

    for name in PRELOAD_MODULES:
        importlib.import_module(name)


def fork_problems(control_fd: int) -> list[str]:
    """Why forking this process now would leak state into its children (empty: safe)."""
    problems = []
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        problems.append(f"{len(others)} Python thread(s) are running ({', '.join(sorted(others)[:5])}); threads "
                        "don't survive a fork. Start them in @enter(snap=False) instead")
    sockets = []
    for entry in _fds():
        if entry[0] != control_fd and entry[1].startswith("socket:"):
            sockets.append(entry[0])
    if sockets:
        problems.append(f"{len(sockets)} socket(s) are open (fds {', '.join(map(str, sockets[:5]))}); a connection "
                        "can't be shared by every container. Open connections in @enter(snap=False) instead")
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    if "/dev/nvidia" in maps:
        problems.append("a GPU is mapped into the process (CUDA was initialised); GPU state can't cross a fork. "
                        "Load weights on the CPU in @enter(snap=True) and move them to the GPU in "
                        "@enter(snap=False)")
    return problems


def _fds() -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        try:
            out.append((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except (OSError, ValueError):
            continue
    return out


class Template:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.connected = True
        self.retiring = False
        self.children: dict[int, str] = {}  # pid -> task id
        self.spares: dict[int, str] = {}  # pre-forked spares not activated (the container runtime): pid -> spare id
        self.service: user_code.Service | None = None
        self.definition: dict[str, Any] = {}
        self.times: dict[str, float] = {}
        self._wake_r = self._wake_w = -1

    # -- talking to the worker ----------------------------------------------------------------

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        if not self.connected:
            return
        try:
            forkserver.send(self.sock, message, fds or [])
        except OSError:
            self.connected = False
            self.retiring = True

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> bool:
        spec = msgpack.unpackb(Path(os.environ[forkserver.ENV_TEMPLATE_SPEC]).read_bytes(), raw=False)
        definition = spec["definition"]
        try:
            start = time.perf_counter()
            if definition is None:
                # A preloaded interpreter: the runtime and the SDK are imported, the user's code is
                # not; each child loads the function itself, as a new process would.
                preload()
                loaded = done = time.perf_counter()
            else:
                self.definition = definition
                self.service = user_code.load(definition, decode_params(spec.get("params")))
                loaded = time.perf_counter()
                asyncio.run(self.service.enter_pre_snapshot())
                done = time.perf_counter()
        except BaseException as exc:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            sys.stderr.write(tb)
            self.send({"op": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": tb})
            return False
        if self.service is not None:
            self.times = {"import_ms": (loaded - start) * 1000, "snap_hooks_ms": (done - loaded) * 1000}
        problems = fork_problems(self.sock.fileno())
        if problems:
            self.send({"op": "refused", "reason": "; ".join(problems)})
            return False
        gc.collect()
        gc.freeze()
        self.send({"op": "ready", "pid": os.getpid(), **{k: round(v, 3) for k, v in self.times.items()}})
        return True

    # -- serving ------------------------------------------------------------------------------

    def serve(self) -> None:
        if os.environ.get(forkserver.ENV_TEMPLATE_SANDBOXED):
            # Fork requests bring namespace fds: no process the user's code left behind may take
            # them through /proc/<pid>/fd (a non-dumpable process's /proc entries need CAP_SYS_PTRACE).
            _libc.prctl(_libc.PR_SET_DUMPABLE, 0)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.signal(signal.SIGCHLD, _ignore)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        # poll(), not epoll: it holds no fd that every child would inherit.
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        poller.register(self.sock.fileno(), select.POLLIN)
        while True:
            self._reap()
            # (a spare is not killed here: the worker may have activated it already; it exits once the worker
            # closes the socket it waits on, as the worker does when it retires a template, or goes away)
            if self.retiring and not self.children and not self.spares:
                return
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    _drain(self._wake_r)
                elif self.connected and not self._handle_request():
                    poller.unregister(self.sock.fileno())

    def _on_term(self, signum: int, frame: Any) -> None:
        self.retiring = True

    def _handle_request(self) -> bool:
        try:
            message, fds = forkserver.recv(self.sock)
        except forkserver.ForkProtocolError as exc:
            print(f"skylift template: {exc}", file=sys.stderr, flush=True)
            return True
        except OSError:
            message, fds = None, []
        if message is None:  # the worker went away: finish what we forked, then go
            self.connected = False
            self.retiring = True
            return False
        op = message["op"]
        if op == "fork":
            self._fork(message, fds)
        elif op == "spare":
            self._spare(message, fds)
        elif op == "activated":
            forkserver.close_fds(fds)
            self._activated(message)
        elif op == "drop_spare":
            forkserver.close_fds(fds)
            self._drop_spare(str(message.get("spare_id") or ""))
        elif op == "retire":
            self.retiring = True
        else:
            forkserver.close_fds(fds)
        return True

    def _fork(self, message: dict[str, Any], fds: list[int]) -> None:
        task_id = str(message.get("task_id") or "")
        if self.retiring or len(fds) < 2 or not isinstance(message.get("env"), dict):
            forkserver.close_fds(fds)
            self.send({"op": "fork_failed", "task_id": task_id,
                       "error": "this template is retiring" if self.retiring else "a fork request needs an env "
                                                                                "and two fds (stdout, stderr)"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        container = message.get("container")
        if isinstance(container, dict) and isinstance(container.get("fork_dir"), str):
            fork_container.carried_mounts(container["fork_dir"])  # once, here: every child inherits it
        me = os.getpid()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            fork_child.become(fork_child.Inheritance(
                message=message, fds=fds, close_fds=self._own_fds(),
                service=self.service, definition=self.definition, snapshot_times=self.times, forked_at=started,
                template_pid=me))
        forked = time.perf_counter()
        forkserver.close_fds(fds)
        self.children[pid] = task_id
        self.send({"op": "forked", "task_id": task_id, "pid": pid, "fork_ms": round((forked - started) * 1000, 3)})

    def _own_fds(self) -> list[int]:
        """What a child must not keep: the socket to the worker and the wakeup pipe."""
        return [self.sock.fileno(), self._wake_r, self._wake_w]

    # -- pre-forked spares (docs/cold-starts.md) --------------------------------------------------

    def _spare(self, message: dict[str, Any], fds: list[int]) -> None:
        """Fork a spare: it becomes a container as far as it can without a task, then waits for its activation.

        The socket it waits on goes to the worker with the answer, and the template keeps no end of it: the
        worker activates the spare directly (one hop less) and then says `activated`.
        """
        spare_id = str(message.get("spare_id") or "")
        container = message.get("container")
        if self.retiring or not spare_id or spare_id in self.spares.values() or not isinstance(container, dict) \
                or not isinstance(container.get("fork_dir"), str):
            forkserver.close_fds(fds)
            self.send({"op": "spare_failed", "spare_id": spare_id,
                       "error": "this template is retiring" if self.retiring else "a bad spare request"})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        fork_container.carried_mounts(container["fork_dir"])
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            fork_child.become_spare(fork_child.Inheritance(
                message={"container": container}, fds=fds, close_fds=[*self._own_fds(), ours.fileno()],
                service=self.service, definition=self.definition, snapshot_times=self.times,
                template_pid=me), theirs.fileno())
        theirs.close()
        forkserver.close_fds(fds)
        self.spares[pid] = spare_id
        self.send({"op": "spared", "spare_id": spare_id, "pid": pid}, [ours.fileno()])
        ours.close()

    def _activated(self, message: dict[str, Any]) -> None:
        """The worker activated a spare: it is that task's container now (its exit is reported as a child's)."""
        spare_id = str(message.get("spare_id") or "")
        for pid, spare in list(self.spares.items()):
            if spare == spare_id:
                del self.spares[pid]
                self.children[pid] = str(message.get("task_id") or "")

    def _drop_spare(self, spare_id: str) -> None:
        """The spare goes without running anything (killed; its socket is the worker's to close)."""
        for pid, spare in self.spares.items():
            if spare == spare_id:
                _kill(pid)

    def _reap(self) -> None:
        while self.children or self.spares:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                self.spares.clear()
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
            spare_id = self.spares.pop(pid, None)
            if spare_id is not None:
                self.send({"op": "spare_exited", "spare_id": spare_id, "pid": pid, "code": code})
                continue
            self.children.pop(pid, None)
            self.send({"op": "exited", "pid": pid, "code": code})


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _ignore(signum: int, frame: Any) -> None:
    pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def main() -> None:
    try:
        fd = int(os.environ[forkserver.ENV_TEMPLATE_FD])
    except (KeyError, ValueError):
        print(f"skylift: {forkserver.ENV_TEMPLATE_FD} not set: a worker starts templates", file=sys.stderr)
        os._exit(2)
    template = Template(socket.socket(fileno=fd))
    code = 0
    try:
        if template.load():
            template.serve()
        else:
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the user's atexit handlers belong to containers, not to the snapshot.
    os._exit(code)
