"""Errors of the container runtime.

    ContainerError                 root of what this package raises
    ├── SandboxError               a container could not be started or entered
    ├── BaseImageError             building the Debian base failed (debootstrap, mirror, disk)
    └── UnsupportedPythonVersion   python_version names a Python the distribution doesn't ship (also a ValueError)
"""

from __future__ import annotations


class ContainerError(Exception):
    pass


class SandboxError(ContainerError):
    pass


class BaseImageError(ContainerError):
    pass


class UnsupportedPythonVersion(ContainerError, ValueError):
    pass
