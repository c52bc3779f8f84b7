"""The bubblewrap command line that turns a mounted root filesystem into a container.

bubblewrap was chosen over runc and crun (see docs/containers.md for the figures): started from a
process already placed in the container's cgroups it is the fastest here (`/bin/true` ~6 ms, runc
~30 ms, crun ~9 ms but only inside a private mount namespace on hybrid-cgroup hosts), it needs no
bundle written per container, and with the masks below it is as tight as an OCI runtime's defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import policy

_TMP_MODE = "1777"

# In a memory-snapshot template's sandbox (docs/cold-starts.md): its root filesystem again, with
# nothing mounted inside (the lower layer of each forked container), and the forked containers'
# writable layers (the host's `<template dir>/forks`).
FORK_ROOT = "/run/skylift-fork/root"
FORK_LAYERS = "/run/skylift-fork/layers"
# What a template may do beyond a container, inside its own user namespace only (userns.py): make
# namespaces and mounts, drop capabilities from the bounding set, bring a new loopback up.
TEMPLATE_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETPCAP", "CAP_NET_ADMIN")


@dataclass
class BwrapOptions:
    rootfs: Path
    command: list[str]
    cwd: str = "/"
    hostname: str = "skylift"
    binds: list[tuple[str, str, bool]] = field(default_factory=list)  # (host, container, read_only)
    files: list[tuple[Path, str]] = field(default_factory=list)  # generated files shown read-only
    cgroup_dirs: list[tuple[Path, str]] = field(default_factory=list)  # (host dir, name under /sys/fs/cgroup)
    unshare_net: bool = False
    private_tmp: bool = True
    seccomp_fd: int | None = None
    status_fd: int | None = None
    fork_layers: Path | None = None  # set for a memory-snapshot template (see FORK_ROOT)
    userns_fd: int | None = None  # join this user namespace as its root (a template's)


def root_mount_targets(options: BwrapOptions) -> list[str]:
    """Paths in the root filesystem that bubblewrap mounts something on (and creates when missing)."""
    targets = ["/proc", "/dev", "/sys"] + (["/tmp"] if options.private_tmp else [])
    targets += [dest for _, dest in options.files]
    targets += [dest for _, dest, _ in options.binds]
    return targets


def _mask_args() -> list[str]:
    args: list[str] = []
    for path in policy.READ_ONLY_PROC_DIRS:
        if os.path.isdir(path):
            # the host's /proc/sys shows the reader's own network namespace, so nothing leaks through it
            args += ["--ro-bind", path, path]
    for path in policy.MASKED_PROC_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    for path in (*policy.MASKED_PROC_DIRS, *policy.MASKED_SYS_DIRS):
        if os.path.isdir(path):
            args += ["--tmpfs", path, "--remount-ro", path]
    return args


def build_args(bwrap: str, options: BwrapOptions) -> list[str]:
    args = [bwrap, "--bind", str(options.rootfs), "/", "--proc", "/proc", "--dev", "/dev",
            "--perms", _TMP_MODE, "--tmpfs", "/dev/shm", "--ro-bind", "/sys", "/sys"]
    args += _mask_args()
    if options.cgroup_dirs:
        if any(name == "" for _, name in options.cgroup_dirs):
            args += ["--ro-bind", str(options.cgroup_dirs[0][0]), "/sys/fs/cgroup"]
        else:
            args += ["--tmpfs", "/sys/fs/cgroup"]
            for host_dir, name in options.cgroup_dirs:
                args += ["--ro-bind", str(host_dir), f"/sys/fs/cgroup/{name}"]
            args += ["--remount-ro", "/sys/fs/cgroup"]
    if options.private_tmp:
        args += ["--perms", _TMP_MODE, "--tmpfs", "/tmp"]
    for source, dest in options.files:
        args += ["--ro-bind", str(source), dest]
    for host, dest, read_only in options.binds:
        args += ["--ro-bind" if read_only else "--bind", host, dest]
    if options.fork_layers is not None:
        args += ["--ro-bind", str(options.rootfs), FORK_ROOT, "--bind", str(options.fork_layers), FORK_LAYERS]
    args += ["--chdir", options.cwd]
    if options.userns_fd is not None:
        args += ["--userns", str(options.userns_fd), "--uid", "0", "--gid", "0"]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if options.unshare_net:
        args.append("--unshare-net")
    args += ["--hostname", options.hostname, "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for cap in policy.CAPABILITIES:
        args += ["--cap-add", cap]
    if options.fork_layers is not None:
        for cap in TEMPLATE_CAPABILITIES:
            args += ["--cap-add", cap]
    if options.seccomp_fd is not None:
        args += ["--seccomp", str(options.seccomp_fd)]
    if options.status_fd is not None:
        args += ["--json-status-fd", str(options.status_fd)]
    args += ["--", *options.command]
    return args
