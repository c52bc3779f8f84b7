"""Can this worker persist memory snapshots to disk with CRIU? Detection only, and why not.

Templates (`fork_server.py`) live in memory: a restarted worker starts them again, re-running
imports and `@enter(snap=True)` once per pool. CRIU could dump a template to disk and restore it
after a restart instead, but only a working CRIU >= 4.1 can: Debian 12's 3.17 fails on kernels
>= 6.13 ("vdso: Unexpected rt vDSO area bounds"), and `criu check` needs root.

    status = detect()           # runs `criu --version` and `criu check` (a few hundred ms, once)
    status.usable, status.reason

`judge()` is the pure decision, tested on the outputs of real CRIU versions. A persisting backend
is not implemented: where CRIU is usable the worker says so and keeps templates in memory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

MIN_VERSION = (4, 1)
CHECK_TIMEOUT = 20.0


@dataclass(frozen=True)
class CriuStatus:
    usable: bool
    version: str  # "" when criu is missing or unreadable
    reason: str


def parse_version(output: str) -> tuple[int, ...] | None:
    """The version in `criu --version` output ("Version: 3.17.1" / "Version: 4.1").

    Example:
        >>> parse_version("Version: 3.17.1\\n")
        (3, 17, 1)
        >>> parse_version("GitID: v4.1-12-g...\\nVersion: 4.1\\n")
        (4, 1)
        >>> parse_version("criu: command not found") is None
        True
    """
    match = re.search(r"^Version:\s*(\d+(?:\.\d+)*)", output, re.MULTILINE)
    if match is None:
        return None
    return tuple(int(part) for part in match.group(1).split("."))


def judge(path: str | None, version_output: str | None, check: tuple[int, str] | None) -> CriuStatus:
    """Whether CRIU can persist snapshots, from `which criu`, `criu --version` and `criu check`.

    Example:
        >>> judge(None, None, None).reason
        'criu is not installed (memory snapshots need CRIU >= 4.1 to outlive a worker restart)'
        >>> judge("/usr/sbin/criu", "Version: 3.17.1", None).usable
        False
        >>> judge("/usr/sbin/criu", "Version: 4.1", (0, "Looks good.")).usable
        True
    """
    need = ".".join(map(str, MIN_VERSION))
    if path is None:
        return CriuStatus(False, "", f"criu is not installed (memory snapshots need CRIU >= {need} to outlive a "
                                     "worker restart)")
    version = parse_version(version_output or "")
    if version is None:
        return CriuStatus(False, "", f"{path} --version did not say its version: {(version_output or '').strip()!r}")
    shown = ".".join(map(str, version))
    if version < MIN_VERSION:
        return CriuStatus(False, shown, f"criu {shown} is older than {need} (Debian 12's 3.17 fails on kernels >= "
                                        "6.13: 'Unexpected rt vDSO area bounds'); install CRIU >= "
                                        f"{need} to keep snapshots across worker restarts")
    if check is None:
        return CriuStatus(False, shown, f"criu {shown} found, but `criu check` was not run")
    code, output = check
    if code != 0:
        last = output.strip().splitlines()[-1] if output.strip() else f"exit code {code}"
        return CriuStatus(False, shown, f"criu {shown} found, but `criu check` fails here: {last}")
    return CriuStatus(True, shown, f"criu {shown} works here")


def detect(which: Callable[[str], str | None] = shutil.which,
           run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> CriuStatus:
    path = which("criu")
    if path is None:
        return judge(None, None, None)
    try:
        version = run([path, "--version"], capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return judge(path, f"(could not run it: {exc})", None)
    text = version.stdout + version.stderr
    parsed = parse_version(text)
    if parsed is None or parsed < MIN_VERSION:
        return judge(path, text, None)
    if os.geteuid() != 0:
        return CriuStatus(False, ".".join(map(str, parsed)), "criu was found, but `criu check` needs root")
    try:
        checked = run([path, "check"], capture_output=True, text=True, timeout=CHECK_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return judge(path, text, (1, str(exc)))
    return judge(path, text, (checked.returncode, checked.stdout + checked.stderr))


def describe(status: CriuStatus) -> str:
    """The worker's one log line about where snapshots live."""
    if status.usable:
        return (f"memory snapshots: {status.reason}, but persisting them to disk is not implemented yet; templates "
                "stay in memory and a restarted worker takes them again")
    return f"memory snapshots stay in memory (a restarted worker takes them again): {status.reason}"
