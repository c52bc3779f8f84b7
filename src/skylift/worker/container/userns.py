"""The user namespace memory-snapshot templates and their forks run in (docs/cold-starts.md).

A container forked from a template makes its own mount, pid, ipc and uts namespaces, so it needs
CAP_SYS_ADMIN somewhere — and the code that uses it runs in an interpreter the user's imports ran
in first, so it can't be trusted to give it up. Templates and forks therefore live in a user
namespace whose root is an unprivileged host uid (`BASE`, 65,536 ids from there), as rootless
containers do: whatever they hold or skip, nothing reaches the host's root. The image's
root-owned files stay root's inside through idmapped mounts (`_libc.open_tree_idmapped`).

    userns = fork_userns()              # started once per worker, owned by uid BASE
    fd = userns.open()                  # bubblewrap joins it (run as uid BASE) for a template
    userns.attach_netns("sl-…")         # a network namespace owned by it (for the fork pool)
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading

from .host import tool

# Runs as `python -I -S -c`: dies with the worker, makes the user namespace, then on each input line
# moves itself into a new network namespace (which the worker binds to a name before the next one).
_HOLDER = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, 9, 0, 0, 0)
def reply(ok):
    sys.stdout.write("ok\n" if ok else "error %d\n" % ctypes.get_errno())
    sys.stdout.flush()
reply(libc.unshare(0x10000000) == 0)
for line in sys.stdin:
    reply(libc.unshare(0x40000000) == 0)
"""
# The host uids (and gids) of templates and forks: uid 0 inside is BASE outside. High enough not to
# meet a real user's uid or a subuid range handed out by useradd.
BASE = 0x70000000
SIZE = 65536
SHIFTED_MAP = f"0 {BASE} {SIZE}\n"


class UsernsError(RuntimeError):
    pass


class ForkUserns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # As uid BASE, so that BASE owns the namespace: a process of that uid (bubblewrap for a template)
        # may join it and has every capability inside it, and none outside.
        self._process = self._start_holder()
        self.pid = self._process.pid
        try:
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{self.pid}/{name}", "w") as f:
                    f.write(SHIFTED_MAP)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _start_holder() -> subprocess.Popen[str]:
        """The holder, run by the first interpreter uid BASE may execute (the worker's may sit below a
        private directory such as /root): the system's python3 (python3-minimal), else the worker's own."""
        tried = []
        for python in dict.fromkeys(["/usr/bin/python3", sys.executable, getattr(sys, "_base_executable", "")]):
            if not python or not os.path.exists(python):
                continue
            argv = [tool("setpriv") or "setpriv", f"--reuid={BASE}", f"--regid={BASE}", "--clear-groups",
                    python, "-I", "-S", "-c", _HOLDER]
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            assert process.stdout is not None and process.stderr is not None
            line = process.stdout.readline().strip()
            if line == "ok":
                process.stderr.close()
                return process
            process.kill()
            process.wait()
            tried.append(f"{python}: {line or process.stderr.read().strip() or f'exit {process.returncode}'}")
            process.stderr.close()
            process.stdout.close()
            if process.stdin is not None:
                process.stdin.close()
        raise UsernsError(f"can't start the forks' user namespace as uid {BASE} ({'; '.join(tried) or 'no python3'})")

    def _expect(self, what: str) -> None:
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if line != "ok":
            raise UsernsError(f"{what} failed: {line or 'the holder process exited'}")

    def open(self) -> int:
        """A new fd of the user namespace (the caller closes it)."""
        return os.open(f"/proc/{self.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)

    def attach_netns(self, name: str) -> None:
        """Create a network namespace owned by this user namespace, named `name` (/run/netns/<name>)."""
        assert self._process.stdin is not None
        with self._lock:
            self._process.stdin.write("net\n")
            self._process.stdin.flush()
            self._expect("creating a network namespace")
            result = subprocess.run([tool("ip") or "ip", "netns", "attach", name, str(self.pid)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise UsernsError(f"ip netns attach {name} failed: {result.stderr.strip()}")

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()


_userns: ForkUserns | None = None
_userns_lock = threading.Lock()


def fork_userns() -> ForkUserns:
    """This worker's user namespace for forked containers (started on first use)."""
    global _userns
    with _userns_lock:
        if _userns is None or _userns._process.poll() is not None:
            _userns = ForkUserns()
            atexit.register(_userns.close)
        return _userns
