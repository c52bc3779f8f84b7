"""Starting bubblewrap inside the container's cgroups and network namespace.

`sh` moves itself into each cgroup (see `cgroups.Cgroup.join_files`) and execs `nsenter --net=…`, which execs
bubblewrap: one process, so no process of the container ever runs outside its limits, and ~1 ms for
the two extra execs instead of a fork-unsafe `preexec_fn` in the (threaded) worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .host import tool

# Exit status 125 means the launcher itself failed (as with `docker run`), before bubblewrap ran.
LAUNCHER_FAILED = 125
# mirrors cgroups.join_value: "0" (this thread) for v1 `tasks`, the pid for `cgroup.procs`
_JOIN = ('while [ "$1" != -- ]; do case "$1" in */tasks) v=0;; *) v=$$;; esac; '
         'echo $v > "$1" || exit 125; shift; done; shift; exec "$@"')

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def launcher_argv(bwrap_argv: list[str], cgroup_join: list[Path], netns_path: str | None,
                  as_uid: int | None = None) -> list[str]:
    """`as_uid`: run bubblewrap as that host uid (and gid), e.g. a snapshot template's (userns.BASE)."""
    argv = list(bwrap_argv)
    if as_uid is not None:
        argv = [tool("setpriv") or "setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups", *argv]
    if netns_path is not None:
        argv = [tool("nsenter") or "nsenter", f"--net={netns_path}", "--", *argv]
    if cgroup_join:
        argv = ["/bin/sh", "-c", _JOIN, "skylift-launch", *[str(p) for p in cgroup_join], "--", *argv]
    return argv


def container_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a container starts with: sane defaults under the caller's variables."""
    result = {"PATH": DEFAULT_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    result.update(env)
    return result


def etc_files(directory: Path, hostname: str, resolv_conf: str) -> list[tuple[Path, str]]:
    """/etc/hosts, /etc/hostname and /etc/resolv.conf for one container, written under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    contents = {
        "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n",
        "hostname": f"{hostname}\n",
        "resolv.conf": resolv_conf,
    }
    files = []
    for name, text in contents.items():
        path = directory / name
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        files.append((path, f"/etc/{name}"))
    return files
