"""Where skylift puts things inside a container of the `container` runtime.

    /opt/skylift-venv/               debian_slim()'s Python: a venv of Debian's python3 (pip included)
    /opt/skylift-runtime/<package>   skylift, msgpack, cloudpickle of the worker, bound read-only
    /run/skylift/server.sock         the control plane's unix socket (its directory bound read-only)
    /run/skylift-build/...           what a build step is lent: uv, requirement files, the function
    /root                            user source and add_local_*(copy=False) mounts (copy-on-write)

The runtime packages are bound from the worker's own installation, never copied into an image,
so a container always speaks the control plane's protocol version (as the process runtime's
`runtime-site/` links do). `PYTHONPATH` makes them importable from any Python in any image.
"""

from __future__ import annotations

import importlib
from pathlib import Path

VENV = "/opt/skylift-venv"
VENV_PYTHON = f"{VENV}/bin/python"
RUNTIME_DIR = "/opt/skylift-runtime"
CONTROL_DIR = "/run/skylift"
BUILD_DIR = "/run/skylift-build"
SOURCE_ROOT = "/root"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Packages every container gets from the worker (see `skylift.worker.images.RUNTIME_PACKAGES`).
RUNTIME_PACKAGES = ("skylift", "msgpack", "cloudpickle")

Bind = tuple[Path, str, bool]  # (host path, container path, read_only)


def runtime_package_dirs() -> dict[str, Path]:
    """The host directories of the packages the runtime needs, by name."""
    found = {}
    for name in RUNTIME_PACKAGES:
        module = importlib.import_module(name)
        found[name] = Path(next(iter(module.__path__))).resolve()
    return found


_package_dirs: dict[str, Path] | None = None


def runtime_binds() -> list[Bind]:
    """Read-only binds that make the worker's skylift importable at `RUNTIME_DIR` in a container."""
    global _package_dirs
    if _package_dirs is None:
        _package_dirs = runtime_package_dirs()
    return [(path, f"{RUNTIME_DIR}/{name}", True) for name, path in _package_dirs.items()]
