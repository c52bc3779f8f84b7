"""The platform's home (SKYLIFT_HOME) is private to its owner: the directory 0700, its state files 0600.

The home holds the admin token, the state database (secrets, every app's inputs and outputs) and the
server's log, so nobody but its owner may read it, whatever the umask of whoever created it. Files are
created with their mode (`private_file`, `open_private`), not chmod-ed after a window in which another
user could open them; `make_private` also tightens a home made by an older version, at start.

Containers never reach anything here by path: the container runtime (as root) mounts what they see —
image layers, the socket directory, volumes — so a 0700 home hides the rest from them too.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

DIR_MODE = 0o700
FILE_MODE = 0o600
# Files of the home that hold or reveal state (SQLite names its WAL and shared memory after the database
# and gives them the database file's mode).
STATE_FILES = ("state.db", "state.db-wal", "state.db-shm", "state.db-journal", "server.log", "server.json",
               "token", "worker_token", "server.lock", "launch.lock", "web_port")
# Directories of the home that hold state; the home's 0700 already closes them, but a copied or
# moved directory keeps its own mode.
STATE_DIRS = ("blobs", "blobs-cache", "socket")


def make_private(home: Path) -> None:
    """Create `home` (0700) if missing; else tighten it and its state files and directories."""
    home.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(home, DIR_MODE)
    for name in STATE_DIRS:
        _tighten(home / name, DIR_MODE)
    for name in STATE_FILES:
        _tighten(home / name, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if (st.st_mode & 0o777) & ~mode and not os.path.islink(path):
            os.chmod(path, st.st_mode & mode & 0o7777)


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 if missing, and make it 0600 if it exists (before SQLite opens a
    database there, so that its WAL and shared-memory files are 0600 too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def open_private(path: Path, mode: str = "ab") -> IO[bytes]:
    """`open(path, mode)` for a binary append or write, the file 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, mode)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a temporary file renamed over it), the file 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open_private(tmp, "wb") as f:
        f.write(text.encode())
    os.replace(tmp, path)
