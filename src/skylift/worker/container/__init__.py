"""The `container` runtime: Linux containers from overlayfs layers, bubblewrap, cgroups and namespaces.

    ok, why = available()                       # root, overlayfs, bwrap, cgroups, libseccomp?
    base = build_debian_base(cache, "3.11", log)   # debootstrap + python3, cached
    code = run_build_step([base], layer, ["sh", "-c", "apt-get install -y jq"], {}, "/", log)
    sandbox = await Sandbox.start(SandboxSpec(layers=[base, layer], command=[...], task_id=..., state_dir=...))

See docs/containers.md for the isolation model, the measured costs and the Debian packages it needs.
"""

from __future__ import annotations

from .build import run_build_step
from .debian import build_debian_base
from .errors import BaseImageError, ContainerError, SandboxError, UnsupportedPythonVersion
from .host import available
from .sandbox import Sandbox, SandboxSpec, SandboxStats, cleanup_stale

__all__ = [
    "BaseImageError",
    "ContainerError",
    "Sandbox",
    "SandboxError",
    "SandboxSpec",
    "SandboxStats",
    "UnsupportedPythonVersion",
    "available",
    "build_debian_base",
    "cleanup_stale",
    "run_build_step",
]
