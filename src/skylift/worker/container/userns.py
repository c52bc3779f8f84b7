"""The user namespace that containers forked from a memory snapshot belong to (docs/cold-starts.md).

A container forked from a template must create its own mount, pid, ipc and uts namespaces, but the
template (which ran the user's imports) holds no CAP_SYS_ADMIN and may create no user namespace. The
worker keeps one user namespace for them instead, with the identity mapping (uid 0 is root, as in
every container), held open by a small process:

    userns = fork_userns()              # started once per worker
    fd = userns.open()                  # sent with each fork request; the child setns()es into it
    userns.attach_netns("sl-…")         # a network namespace owned by it (for the fork pool)

A process whose euid owns a user namespace has every capability in it, so the forked child, after
`setns`, may unshare and mount — inside namespaces that belong to this user namespace only. Mounts
it inherits from the template are locked there, and before running any of its own code it drops to
the container's capabilities, sets no_new_privs and loads the full seccomp filter.
"""

from __future__ import annotations

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
IDENTITY_MAP = "0 0 4294967295\n"


class UsernsError(RuntimeError):
    pass


class ForkUserns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HOLDER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.pid = self._process.pid
        try:
            self._expect("creating a user namespace")
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{self.pid}/{name}", "w") as f:
                    f.write(IDENTITY_MAP)
        except BaseException:
            self.close()
            raise

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
        return _userns
