"""What this host offers the container runtime: tools, kernel features, DNS and package mirrors."""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import platform
import shutil
import subprocess
from pathlib import Path

from ... import _libc
from .cgroups import detect as detect_cgroups

RUNTIME_DIR_ENV = "SKYLIFT_CONTAINER_RUNTIME_DIR"
DEFAULT_RUNTIME_DIR = Path("/run/skylift-container")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "SKYLIFT_DEBIAN_MIRROR"


def runtime_dir() -> Path:
    """Host-wide state of the runtime (compiled seccomp filter, read-only bwrap, network pool)."""
    return Path(os.environ.get(RUNTIME_DIR_ENV) or DEFAULT_RUNTIME_DIR)


def tool(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin")


def _overlay_supported() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def available() -> tuple[bool, str]:
    """Whether this host can run containers and, if not, why (in words fit for a log line)."""
    if platform.system() != "Linux":
        return False, f"containers need Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return False, f"containers need root (the worker runs as uid {os.geteuid()})"
    if not _overlay_supported():
        return False, "the kernel has no overlayfs (modprobe overlay)"
    for name, package in (("bwrap", "bubblewrap"), ("nsenter", "util-linux"), ("ip", "iproute2"),
                          ("nft", "nftables")):
        if tool(name) is None:
            return False, f"`{name}` is missing (install the Debian package {package})"
    bwrap = bwrap_version()
    if bwrap < MIN_BWRAP:
        return False, (f"bubblewrap {'.'.join(map(str, bwrap))} is too old (needs "
                       f"{'.'.join(map(str, MIN_BWRAP))}+ for --json-status-fd and --perms on tmpfs)")
    version, why = detect_cgroups()
    if version is None:
        return False, f"cgroups can't limit containers here: {why}"
    try:
        from .seccomp import _load_library

        _load_library()
    except Exception as e:
        return False, str(e)
    return True, f"bubblewrap {'.'.join(map(str, bwrap))} + overlayfs + cgroup {version}"


MIN_BWRAP = (0, 6, 0)  # tested with Debian 12's 0.8.0


def bwrap_version() -> tuple[int, ...]:
    path = tool("bwrap")
    if path is None:
        return (0,)
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
        return tuple(int(p) for p in out.split()[-1].split(".")[:3])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return (0,)


def arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64el"}.get(machine, machine)


def debian_mirror() -> str:
    """The Debian mirror apt uses on this host (deb822 or one-line sources), else deb.debian.org."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    sources = Path("/etc/apt/sources.list.d")
    candidates = sorted(sources.glob("*.sources")) if sources.is_dir() else []
    for path in candidates:
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith("#"):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            suites = fields.get("suites", "").split()
            if "deb" in fields.get("types", "").split() and any(not s.endswith("-security") for s in suites):
                uris = fields.get("uris", "").split()
                if uris and "security" not in uris[0]:
                    return uris[0]
    lists = [Path("/etc/apt/sources.list")]
    if sources.is_dir():
        lists += sorted(sources.glob("*.list"))
    for path in lists:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb" and "security" not in words[1]:
                    uri = next((w for w in words[1:] if "://" in w), None)
                    if uri:
                        return uri
    return DEFAULT_MIRROR


def resolv_conf() -> str:
    """The resolver configuration a container gets: the host's, minus loopback servers it can't reach.

    With systemd-resolved (127.0.0.53) the upstream servers are in /run/systemd/resolve/resolv.conf.
    """
    for path in (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf")):
        try:
            text = path.read_text()
        except OSError:
            continue
        lines = []
        servers = 0
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["nameserver"] and len(words) > 1:
                try:
                    if ipaddress.ip_address(words[1].split("%")[0]).is_loopback:
                        continue
                except ValueError:
                    continue
                servers += 1
            lines.append(line)
        if servers:
            return "\n".join(lines) + "\n"
    return "# skylift: the host has no nameserver a container can reach\n"


def readonly_bwrap() -> str:
    """A copy of bwrap on a read-only bind mount, from which every sandbox is started.

    Inside a container, /proc/1/exe is bubblewrap's init; were it the host's /usr/bin/bwrap, a process
    running as uid 0 could try to rewrite it (the runc /proc/self/exe escape, CVE-2019-5736). Opening
    the copy for writing fails with EROFS whatever the process's credentials.
    """
    source = tool("bwrap")
    if source is None:
        raise FileNotFoundError("bwrap is missing (install the Debian package bubblewrap)")
    st = os.stat(source)
    key = (source, st.st_mtime_ns, st.st_size, str(runtime_dir()))
    if key in _readonly_bwrap:
        return _readonly_bwrap[key]
    content = Path(source).read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:16]
    directory = runtime_dir() / f"bin-{digest}"
    target = directory / "bwrap"
    directory.mkdir(parents=True, exist_ok=True)
    with open(runtime_dir() / ".bin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_mount_point(directory):
            tmp = directory / f".bwrap.{os.getpid()}"
            tmp.write_bytes(content)
            tmp.chmod(0o755)
            os.replace(tmp, target)
            os.chmod(directory, 0o755)  # a snapshot template's bubblewrap runs as an unprivileged uid
            _libc.mount(str(directory), str(directory), None, _libc.MS_BIND)
            _libc.mount(None, str(directory), None,
                        _libc.MS_BIND | _libc.MS_REMOUNT | _libc.MS_RDONLY | _libc.MS_NOSUID | _libc.MS_NODEV)
    _readonly_bwrap[key] = str(target)
    return str(target)


_readonly_bwrap: dict[tuple[str, int, int, str], str] = {}


def _is_mount_point(path: Path) -> bool:
    """Whether `path` is a mount point, bind mounts of a directory onto itself included."""
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].encode().decode("unicode_escape") == wanted for line in f)
