"""Start, find and stop the embedded platform (control plane + one worker) under SKYLIFT_HOME.

The SDK never imports the server: it starts `python -m skylift.server` as a detached process and
talks to it over the protocol like any other client (design §2).
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _private_home
from .exception import AuthError, ConnectionError

START_TIMEOUT = 60.0

# Platforms this process launched: kept so they can be reaped when stopped (and so Popen doesn't
# warn about a child still running when the handle is dropped).
_launched: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ServerInfo:
    url: str
    unix_url: str
    pid: int
    version: str
    token: str


def read_info(home: Path) -> ServerInfo | None:
    try:
        meta = json.loads((home / "server.json").read_text())
        token = (home / "token").read_text().strip()
    except (OSError, ValueError):
        return None
    if not _pid_alive(int(meta.get("pid", 0))):
        return None
    return ServerInfo(meta["url"], meta.get("unix_url", meta["url"]), int(meta["pid"]), meta.get("version", ""), token)


def holds_home(home: Path) -> bool:
    """Whether a control plane holds `home` (its `server.lock`), even one still starting.

    Read from /proc/locks, so asking never takes the lock from a control plane starting right now.
    """
    try:
        st = os.stat(home / "server.lock")
        with open("/proc/locks") as f:
            locks = f.read()
    except OSError:
        return False
    # "1: FLOCK  ADVISORY  WRITE 4321 08:01:123456 0 EOF": major:minor:inode, in hex, hex, decimal.
    ours = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any(len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == ours
               for parts in (line.split() for line in locks.splitlines()))


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (possible in tests that started it) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@contextlib.contextmanager
def _launch_lock(home: Path) -> Iterator[None]:
    _private_home.make_private(home)
    with _private_home.open_private(home / "launch.lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_token(home: Path, token: str, info: ServerInfo | None) -> None:
    """Refuse SKYLIFT_TOKEN without SKYLIFT_SERVER_URL unless it is the embedded platform's own token.

    A token is set to reach a shared server; running on the embedded platform instead, silently,
    would put the user's work (and deployments) somewhere they don't expect.
    """
    if not token or (info is not None and hmac.compare_digest(token.encode(), info.token.encode())):
        return
    raise AuthError(
        "SKYLIFT_TOKEN is set but SKYLIFT_SERVER_URL is not, and the token isn't the embedded platform's "
        f"(in {home / 'token'}). To use a shared server, also set SKYLIFT_SERVER_URL=tcp://HOST:PORT; to use "
        "the embedded platform, unset SKYLIFT_TOKEN.")


def start(home: Path, *, extra_args: list[str] | None = None, quiet: bool = False) -> ServerInfo:
    """Start the embedded platform unless one is running; return how to reach it."""
    with _launch_lock(home):
        info = read_info(home)
        if info is not None:
            return info
        if not quiet:
            print(f"skylift: starting the local platform in {home} ...", file=sys.stderr)
        (home / "server.json").unlink(missing_ok=True)
        for pid, earlier in list(_launched.items()):  # reap platforms of ours that died (e.g. killed)
            if earlier.poll() is not None:
                del _launched[pid]
        log = _private_home.open_private(home / "server.log", "ab")
        env = dict(os.environ)
        env.pop("SKYLIFT_SERVER_URL", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "skylift.server", "--home", str(home), *(extra_args or [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env,
        )
        log.close()
        _launched[proc.pid] = proc
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            info = read_info(home)
            if info is not None and info.pid == proc.pid:
                return info
            if proc.poll() is not None:
                raise ConnectionError(
                    f"the local skylift platform exited with code {proc.returncode} while starting; "
                    f"last lines of {home / 'server.log'}:\n{_tail(home / 'server.log')}")
            time.sleep(0.02)
        proc.kill()
        raise ConnectionError(f"the local skylift platform did not start within {START_TIMEOUT:.0f} s; "
                              f"see {home / 'server.log'}")


def stop(home: Path, *, timeout: float = 15.0) -> bool:
    """Stop the embedded platform; False if none was running."""
    info = read_info(home)
    if info is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(info.pid):
        time.sleep(0.02)
    if _pid_alive(info.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(info.pid, signal.SIGKILL)
    (home / "server.json").unlink(missing_ok=True)
    proc = _launched.pop(info.pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return True


def status(home: Path) -> dict[str, Any] | None:
    info = read_info(home)
    if info is None:
        return None
    found: dict[str, Any] = {"url": info.url, "unix_url": info.unix_url, "pid": info.pid, "version": info.version,
                             "home": str(home)}
    with contextlib.suppress(OSError, ValueError):  # the gateway of web endpoints (docs/web.md)
        found["web_url"] = json.loads((home / "server.json").read_text()).get("web_url") or ""
    return found


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
