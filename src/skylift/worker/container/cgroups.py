"""CPU, memory and process-count limits with cgroups: v1 controllers (as on hybrid hosts) or v2.

A container's processes join the cgroups before the sandbox tool starts (the launcher writes its own pid
to each `cgroup.procs`, then execs bubblewrap), so every process the container ever has is limited and
counted — nothing runs in between. Create + limit + attach + remove costs ~0.15 ms.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
V2_CONTROLLERS = ("cpu", "memory", "pids")
PARENT = "skylift"
CFS_PERIOD_US = 100_000


class CgroupError(RuntimeError):
    pass


@dataclass(frozen=True)
class CgroupLimits:
    cpu: float | None = None  # cores: a hard cap (CFS quota)
    memory_mb: int | None = None
    pids_max: int | None = None
    cpu_request: float | None = None  # cores: the share of contended CPUs (cpu.shares / cpu.weight)


def cpu_shares(cores: float) -> int:
    """cgroup v1 `cpu.shares` for a request of `cores`: 1024 a core, as Kubernetes and Docker count.

    Example:
        >>> cpu_shares(0.125), cpu_shares(2), cpu_shares(0.0001)
        (128, 2048, 2)
    """
    return min(262144, max(2, round(cores * 1024)))


def cpu_weight(cores: float) -> int:
    """cgroup v2 `cpu.weight` for a request of `cores` (the shares mapped onto 1-10000, as runc does).

    Example:
        >>> cpu_weight(0.125), cpu_weight(1)
        (5, 39)
    """
    return 1 + ((cpu_shares(cores) - 2) * 9999) // 262142


@dataclass(frozen=True)
class CgroupStats:
    cpu_seconds: float
    memory_bytes: int
    memory_peak_bytes: int
    oom_kills: int
    pids: int


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, fs type, super options) for every cgroup mount of this process's mount namespace."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            fstype, _source, options = [*right.split(), "", "", ""][:3]
            if fstype in ("cgroup", "cgroup2"):
                mountpoint = fields[4].replace("\\040", " ")
                found.append((mountpoint, fstype, options.split(",")))
    return found


def v1_mounts() -> dict[str, Path]:
    """Mount point of each v1 controller skylift uses (cpu and cpuacct may share one)."""
    result: dict[str, Path] = {}
    for mountpoint, fstype, options in _mounts():
        if fstype == "cgroup":
            for controller in V1_CONTROLLERS:
                if controller in options and controller not in result:
                    result[controller] = Path(mountpoint)
    return result


def v2_root() -> Path | None:
    """The cgroup2 mount when it is the unified hierarchy (/sys/fs/cgroup itself) with the controllers we need."""
    for mountpoint, fstype, _ in _mounts():
        if fstype == "cgroup2" and mountpoint == "/sys/fs/cgroup":
            controllers = (Path(mountpoint) / "cgroup.controllers").read_text().split()
            if all(c in controllers for c in V2_CONTROLLERS):
                return Path(mountpoint)
    return None


def detect() -> tuple[str | None, str]:
    """Which cgroup version can limit containers here ("v1", "v2" or None) and, if none, why."""
    if v2_root() is not None:
        return "v2", ""
    mounts = v1_mounts()
    missing = [c for c in V1_CONTROLLERS if c not in mounts]
    if not missing:
        return "v1", ""
    return None, f"no cgroup v2 with cpu/memory/pids and no v1 mount for {', '.join(missing)}"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _read_keyed(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def join_value(path: Path | str, pid: int) -> str:
    """What to write to a `join_files` entry to move the writing process `pid` there."""
    return "0" if str(path).endswith("/tasks") else str(pid)


_detected: tuple[str, Path | None, dict[str, Path]] | None = None


def _host_layout(root: Path | None, mounts: dict[str, Path] | None) -> tuple[str, Path | None, dict[str, Path] | None]:
    """This host's cgroup version, v2 root and v1 mounts, read from the mount table once (~1 ms a container
    otherwise): cgroup hierarchies are mounted at boot and stay. Explicit `root`/`mounts` win."""
    global _detected
    if _detected is None:
        version, why = detect()
        if version is None:
            raise CgroupError(why)
        _detected = (version, v2_root() if version == "v2" else None, v1_mounts() if version == "v1" else {})
    version, host_root, host_mounts = _detected
    return version, root or host_root, mounts or host_mounts or None


class Cgroup:
    """One container's cgroups; `version` is "v1" or "v2"."""

    def __init__(self, name: str, version: str | None = None, *, root: Path | None = None,
                 mounts: dict[str, Path] | None = None, group: str = "") -> None:
        """`root` (v2) and `mounts` (v1 controller -> mount point) default to this host's. `group`
        nests it under `skylift/<group>/`: a worker's own tree, which it reaps at start (reap.py)."""
        if version is None:
            version, root, mounts = _host_layout(root, mounts)
        self.name = name
        self.version = version
        below = Path(PARENT, group, name) if group else Path(PARENT, name)
        if version == "v2":
            root = root or v2_root()
            if root is None:
                raise CgroupError("no cgroup v2 hierarchy at /sys/fs/cgroup")
            self._root = root
            self._dirs = {"": root / below}
        else:
            mounts = mounts or v1_mounts()
            self._dirs = {}
            for controller in V1_CONTROLLERS:
                self._dirs.setdefault(mounts[controller].name, mounts[controller] / below)
            self._by_controller = {c: mounts[c] / below for c in V1_CONTROLLERS}

    def _dir(self, controller: str) -> Path:
        return self._dirs[""] if self.version == "v2" else self._by_controller[controller]

    @property
    def join_files(self) -> list[Path]:
        """The files a single-threaded process writes to, to move itself into every controller.

        On v1 that is `tasks`, written "0" (this thread): moving one thread skips the global
        threadgroup lock whose RCU grace period costs 8-12 ms a start when starts are spaced
        out; `cgroup.procs` (whole process, the only choice on v2) takes it. See `join_value`.
        """
        name = "cgroup.procs" if self.version == "v2" else "tasks"
        return [d / name for d in self._dirs.values()]

    @property
    def visible_dirs(self) -> list[tuple[Path, str]]:
        """(host directory, name under /sys/fs/cgroup) to show the container its own cgroups."""
        return [(d, key) for key, d in self._dirs.items()]

    def create(self, limits: CgroupLimits) -> None:
        if self.version == "v2":
            self._create_v2(limits)
        else:
            self._create_v1(limits)

    def _create_v1(self, limits: CgroupLimits) -> None:
        for d in self._dirs.values():
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)  # readable by a forked container's unprivileged root, whatever the umask
        if limits.memory_mb is not None:
            limit = str(limits.memory_mb << 20)
            _write(self._dir("memory") / "memory.limit_in_bytes", limit)
            memsw = self._dir("memory") / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # no swapping past the limit: swap would hide the OOM for minutes
                _write(memsw, limit)
        if limits.cpu_request is not None:
            _write(self._dir("cpu") / "cpu.shares", str(cpu_shares(limits.cpu_request)))
        if limits.cpu is not None:
            _write(self._dir("cpu") / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(self._dir("cpu") / "cpu.cfs_quota_us", str(max(1000, int(limits.cpu * CFS_PERIOD_US))))
        if limits.pids_max is not None:
            _write(self._dir("pids") / "pids.max", str(limits.pids_max))

    def _create_v2(self, limits: CgroupLimits) -> None:
        d = self._dirs[""]
        d.parent.mkdir(parents=True, exist_ok=True)
        enable = " ".join(f"+{c}" for c in V2_CONTROLLERS)
        # Every level from the root down to its parent hands the controllers on (skylift/, a group).
        parts = d.parent.relative_to(self._root).parts
        for level in [self._root, *(self._root.joinpath(*parts[:n]) for n in range(1, len(parts) + 1))]:
            enabled = (level / "cgroup.subtree_control").read_text().split()
            if not all(c in enabled for c in V2_CONTROLLERS):
                _write(level / "cgroup.subtree_control", enable)
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o755)  # readable by a forked container's unprivileged root, whatever the umask
        if limits.memory_mb is not None:
            _write(d / "memory.max", str(limits.memory_mb << 20))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
        if limits.cpu_request is not None:
            _write(d / "cpu.weight", str(cpu_weight(limits.cpu_request)))
        if limits.cpu is not None:
            _write(d / "cpu.max", f"{max(1000, int(limits.cpu * CFS_PERIOD_US))} {CFS_PERIOD_US}")
        if limits.pids_max is not None:
            _write(d / "pids.max", str(limits.pids_max))

    def set_cpu_request(self, cores: float | None) -> None:
        """Change the share of contended CPUs (None: the kernel's default, as for no request)."""
        if self.version == "v2":
            _write(self._dirs[""] / "cpu.weight", str(cpu_weight(cores)) if cores is not None else "100")
        else:
            _write(self._dir("cpu") / "cpu.shares", str(cpu_shares(cores)) if cores is not None else "1024")

    def pids(self) -> list[int]:
        try:
            text = (self._dir("memory") / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def stats(self) -> CgroupStats:
        if self.version == "v2":
            d = self._dirs[""]
            current = _read_int(d / "memory.current")
            return CgroupStats(
                cpu_seconds=_read_keyed(d / "cpu.stat", "usage_usec") / 1e6,
                memory_bytes=current,
                memory_peak_bytes=_read_int(d / "memory.peak", current),
                oom_kills=_read_keyed(d / "memory.events", "oom_kill"),
                pids=_read_int(d / "pids.current"),
            )
        memory = self._dir("memory")
        return CgroupStats(
            cpu_seconds=_read_int(self._dir("cpuacct") / "cpuacct.usage") / 1e9,
            memory_bytes=_read_int(memory / "memory.usage_in_bytes"),
            memory_peak_bytes=_read_int(memory / "memory.max_usage_in_bytes"),
            oom_kills=_read_keyed(memory / "memory.oom_control", "oom_kill"),
            pids=_read_int(self._dir("pids") / "pids.current"),
        )

    def signal_all(self, sig: int, *, exclude: tuple[int, ...] = ()) -> None:
        for pid in self.pids():
            if pid not in exclude:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left and delete the cgroups; retries while exiting processes still hold them."""
        deadline = time.monotonic() + timeout
        for d in self._dirs.values():
            while d.exists():
                try:
                    d.rmdir()
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"can't remove cgroup {d}: {e}") from e
                    self.signal_all(signal.SIGKILL)
                    time.sleep(0.005)


def remove_stale(min_age: float = 60.0) -> int:
    """Delete skylift cgroups that are empty and older than `min_age` seconds (left by a crashed worker).

    A cgroup still holding processes is never touched: rmdir refuses it. The age keeps a cgroup that a
    starting container has created but not yet joined.
    """
    root = v2_root()
    parents = [root / PARENT] if root is not None else [m / PARENT for m in set(v1_mounts().values())]
    removed = 0
    now = time.time()
    for parent in parents:
        if not parent.is_dir():
            continue
        for child in parent.iterdir():
            if child.is_dir() and now - child.stat().st_mtime > min_age:
                with contextlib.suppress(OSError):
                    child.rmdir()
                    removed += 1
    return removed
