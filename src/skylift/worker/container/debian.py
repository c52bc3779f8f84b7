"""`Image.debian_slim()`'s base: a Debian root filesystem made by debootstrap, with Python, built once.

debootstrap takes ~35 s (the time goes to dpkg), so the result is cached under the cache directory,
keyed by suite, Python version and architecture. A file lock makes concurrent callers wait for one
build; the build happens in a `.partial` directory renamed into place only when complete, so a failed
or interrupted build leaves nothing that looks usable (and the next build clears the debris).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from . import host
from .errors import BaseImageError, UnsupportedPythonVersion
from .overlay import unmount_all_below

SUITE = "bookworm"
# The Python each suite ships as python3; debian_slim(python_version=) must match one of these.
SUITE_PYTHONS = {"bookworm": "3.11"}
PACKAGES = ("python3", "python3-venv", "ca-certificates")
COMPLETE = ".skylift-base.json"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"


def python_series(python_version: str | None, suite: str = SUITE) -> str:
    """The Python series ("3.11") to build for, or a clear error naming what the suite has."""
    available = SUITE_PYTHONS[suite]
    if python_version is None:
        return available
    wanted = str(python_version).strip()
    parts = wanted.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise UnsupportedPythonVersion(f"python_version={python_version!r} is not a version like {available!r}")
    series = ".".join(parts[:2])
    if series != available:
        raise UnsupportedPythonVersion(
            f"python_version={python_version!r} is not available in Image.debian_slim(): the base is Debian "
            f"{suite}, which ships Python {available} only. Use python_version={available!r}, or an image with "
            f"another Python (e.g. Image.from_registry(\"python:{series}-slim\"))"
        )
    return series


def _security_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d")
    texts = [p.read_text(errors="replace") for p in sorted(sources.glob("*.sources"))] if sources.is_dir() else []
    for text in texts:
        for stanza in text.split("\n\n"):
            if "-security" in stanza:
                for line in stanza.splitlines():
                    if line.lower().startswith("uris:"):
                        return line.split(":", 1)[1].split()[0]
    return DEFAULT_SECURITY_MIRROR


def _stream(argv: list[str], log: Callable[[str], None], prefix: str) -> tuple[int, list[str]]:
    tail: list[str] = []
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            tail = [*tail[-19:], line]
            log(f"{prefix}{line}")
        return process.wait(), tail


def _install_host_cas(root: Path, log: Callable[[str], None]) -> None:
    """Trust what the host trusts: copy its local CA certificates in and rebuild the bundle."""
    certs = sorted(HOST_CA_DIR.rglob("*.crt")) if HOST_CA_DIR.is_dir() else []
    if not certs:
        return
    dest = root / HOST_CA_DIR.relative_to("/")
    for cert in certs:
        target = dest / cert.relative_to(HOST_CA_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cert, target)
    code, tail = _stream(["chroot", str(root), "update-ca-certificates"], log, "ca-certificates: ")
    if code != 0:
        raise BaseImageError("update-ca-certificates failed in the new root:\n" + "\n".join(tail))
    log(f"installed {len(certs)} CA certificate(s) from {HOST_CA_DIR}")


def _finish(root: Path, mirror: str) -> None:
    (root / "etc/apt/sources.list").write_text(
        f"deb {mirror} {SUITE} main\n"
        f"deb {mirror} {SUITE}-updates main\n"
        f"deb {_security_mirror()} {SUITE}-security main\n"
    )
    (root / "etc/hostname").write_text("skylift\n")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _remove(path: Path) -> None:
    if path.exists() and unmount_all_below(path):
        shutil.rmtree(path, ignore_errors=True)


def build_debian_base(cache_dir: Path, python_version: str | None, log: Callable[[str], None]) -> Path:
    """The directory of a Debian base root filesystem with Python (built on first use, then cached).

    Raises `UnsupportedPythonVersion` for a Python the suite doesn't ship and `BaseImageError` when
    debootstrap fails (its last lines are in the message).
    """
    series = python_series(python_version)
    key = f"debian-{SUITE}-py{series}-{host.arch()}"
    final = cache_dir / key
    if (final / COMPLETE).exists():
        return final
    debootstrap = host.tool("debootstrap")
    if debootstrap is None:
        raise BaseImageError("debootstrap is missing (install the Debian package debootstrap)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / COMPLETE).exists():
            return final  # another caller built it while we waited
        partial = cache_dir / f".{key}.partial"
        _remove(partial)
        _remove(final)  # incomplete: no marker
        mirror = host.debian_mirror()
        log(f"building the Debian {SUITE} base with Python {series} from {mirror} (once; ~1 minute)")
        started = time.monotonic()
        try:
            code, tail = _stream(
                [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", f"--arch={host.arch()}",
                 SUITE, str(partial), mirror],
                log, "debootstrap: ",
            )
            if code != 0:
                raise BaseImageError(f"debootstrap exited with code {code}; its last output:\n" + "\n".join(tail))
            _install_host_cas(partial, log)
            _finish(partial, mirror)
            found = (partial / "usr/bin").glob(f"python{series}")
            if not any(found):
                raise BaseImageError(f"the new root has no python{series}: the mirror's {SUITE} has another Python")
            seconds = time.monotonic() - started
            (partial / COMPLETE).write_text(json.dumps({
                "suite": SUITE, "python": series, "arch": host.arch(), "mirror": mirror,
                "packages": list(PACKAGES), "build_seconds": round(seconds, 1), "built_at": time.time(),
            }) + "\n")
            os.rename(partial, final)
        except BaseException:
            _remove(partial)
            raise
        log(f"Debian {SUITE} base with Python {series} ready in {seconds:.1f} s")
        return final
