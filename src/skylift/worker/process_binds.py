"""Volume binds for the process runtime, which has no root filesystem of its own.

A ContainerSpec's `binds` ((host dir, container path, read_only)) mean "show this directory at
that path". The process runtime does that in one of two ways, decided per host:

* **namespace** (root, `unshare` available): the container starts in a private mount namespace
  where each host dir is bind-mounted at its path (`mount --bind`, read-only with a remount).
  Every container sees its own volume view, so any number of containers may mount `/data` at
  once; nothing is mounted for the rest of the host. A missing mount point is created on the host
  as an empty directory (and left there).
* **symlink** (otherwise): the path is made a symlink to the host dir if the path is free and its
  parent writable, and removed when the container exits. Only one container at a time can hold a
  path this way; a container that can't get its path sees the volume only at its host directory
  (`SKYLIFT_VOLUMES` has both; `Volume.commit()` and `reload()` still work), and a warning says so.

Binds whose container path equals the host path need nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .runtime import ContainerSpec

# Runs as root inside the new namespace: mount each (src, dst, ro) triple, then exec the command.
_SCRIPT = ('set -e; while [ "$1" != -- ]; do mkdir -p "$2"; mount --bind "$1" "$2"; '
           'if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi; shift 3; done; shift; exec "$@"')

_namespace_ok: bool | None = None
_symlinks: dict[str, list[Path]] = {}


def namespace_available() -> bool:
    """Root, util-linux `unshare` and `mount`, and a kernel that lets us make a mount namespace."""
    global _namespace_ok
    if _namespace_ok is None:
        unshare = shutil.which("unshare")
        _namespace_ok = False
        if os.geteuid() == 0 and unshare and shutil.which("mount"):
            try:
                probe = subprocess.run([unshare, "--mount", "--propagation", "private", "true"], capture_output=True,
                                       timeout=10)
                _namespace_ok = probe.returncode == 0
            except (OSError, subprocess.SubprocessError):
                _namespace_ok = False
    return _namespace_ok


def _needed(spec: ContainerSpec) -> list[tuple[Path, str, bool]]:
    return [(Path(h), c, ro) for h, c, ro in spec.binds if os.path.realpath(h) != os.path.realpath(c)]


def wrap(spec: ContainerSpec) -> tuple[list[str], list[str]]:
    """The argv that starts `spec` with its binds in place, and warnings for binds it couldn't make."""
    binds = _needed(spec)
    if not binds:
        return list(spec.argv), []
    if namespace_available():
        flat: list[str] = []
        for host, path, read_only in binds:
            flat += [str(host), path, "ro" if read_only else "rw"]
        return [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", _SCRIPT,
                "skylift-binds", *flat, "--", *spec.argv], []
    warnings = []
    made = _symlinks.setdefault(spec.task_id, [])
    for host, path, _ in binds:
        link = Path(path)
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(host, target_is_directory=True)
            made.append(link)
        except OSError as exc:
            warnings.append(f"can't show {host} at {path} in the process runtime ({exc.strerror or exc}); this "
                            f"container sees that volume only at {host}. Run the worker as root (mount "
                            "namespaces) or use the container runtime to get the real path")
    return list(spec.argv), warnings


def release(task_id: str) -> None:
    """Remove the symlinks `wrap` made for a container that has exited."""
    for link in _symlinks.pop(task_id, []):
        try:
            if link.is_symlink():
                link.unlink()
        except OSError:
            pass
