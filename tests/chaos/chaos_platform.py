"""A real platform in a subprocess that the suite can kill, stop, restart and measure.

`python tests/chaos/chaos_server.py` (the real server with chaos knobs) runs on its own home with
the process runtime unless told otherwise; the SDK in the test process talks to it through
SKYLIFT_HOME, as a user's program talks to the embedded platform.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from skylift import _client

SERVER = Path(__file__).with_name("chaos_server.py")
START_TIMEOUT = 60.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped) is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_dead(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} did not exit within {timeout} s"
        time.sleep(0.02)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _all_pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and int(e.name) != os.getpid()]


def _ancestors(pid: int) -> set[int]:
    found: set[int] = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


class ChaosPlatform:
    def __init__(self, home: Path, *, lease: float | None = None, store_faults: float = 0.0, seed: int = 0,
                 runtime: str = "process") -> None:
        self.home = home
        self.args = ["--home", str(home), "--seed", str(seed)]
        if lease is not None:
            self.args += ["--lease", str(lease)]
        if store_faults:
            self.args += ["--store-faults", str(store_faults)]
        self.runtime = runtime
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.starts = 0
        self.seen_containers: dict[int, str] = {}  # pid -> task id, for leftovers()

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        (self.home / "server.json").unlink(missing_ok=True)
        env = dict(os.environ, SKYLIFT_RUNTIME=self.runtime, SKYLIFT_HOME=str(self.home))
        env.pop("SKYLIFT_SERVER_URL", None)
        with open(self.home / "server.log", "ab") as log:
            self.proc = subprocess.Popen([sys.executable, str(SERVER), *self.args], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True, env=env)
        self.pid = self.proc.pid
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError, ValueError):
                if json.loads((self.home / "server.json").read_text()).get("pid") == self.pid:
                    return
            if self.proc.poll() is not None:
                raise AssertionError(f"the control plane exited with {self.proc.returncode} while starting:\n"
                                     f"{self.log()[-3000:]}")
            assert time.monotonic() < deadline, f"the control plane did not start in {START_TIMEOUT} s"
            time.sleep(0.02)

    def kill9(self) -> None:
        """SIGKILL the control plane alone (its worker and containers notice on their own)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.start()

    def stop(self) -> None:
        """SIGTERM, as `skylift server stop` does; SIGKILL of the whole group if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.container_pids()  # remembered: leftovers() checks they are gone
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()

    # ---- looking at it --------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return (self.home / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def worker_pids(self) -> list[int]:
        return [p for p in self._pids() if "skylift.worker" in _cmdline(p)]

    def container_pids(self) -> list[int]:
        """The processes of this platform's containers: they carry a task id and descend from one of
        its workers (inside a real container the server URL is the container's own path)."""
        workers = set(self.worker_pids())
        found = {p: environ(p).get("SKYLIFT_TASK_ID", "") for p in _all_pids()}
        found = {p: task for p, task in found.items() if task and workers & _ancestors(p)}
        self.seen_containers.update(found)
        return list(found)

    def _pids(self) -> list[int]:
        """Every live process started under this home (its environment names the home)."""
        found = []
        for pid in _all_pids():
            env = environ(pid)
            if (env.get("SKYLIFT_HOME") == str(self.home) or str(self.home) in env.get("SKYLIFT_SERVER_URL", "")) \
                    and alive(pid):
                found.append(pid)
        return found


@contextlib.contextmanager
def running(home: Path, **options: object) -> Iterator[ChaosPlatform]:
    """A started ChaosPlatform that this process's SDK uses; stopped at the end."""
    saved = {k: os.environ.get(k) for k in ("SKYLIFT_HOME", "SKYLIFT_SERVER_URL", "SKYLIFT_TOKEN")}
    os.environ["SKYLIFT_HOME"] = str(home)
    os.environ.pop("SKYLIFT_SERVER_URL", None)
    os.environ.pop("SKYLIFT_TOKEN", None)
    platform = ChaosPlatform(home, **options)  # type: ignore[arg-type]
    platform.start()
    _client.reset_default_client()
    try:
        yield platform
    finally:
        _client.reset_default_client()
        platform.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class KillLoop:
    """Kills the control plane with SIGKILL `times` times, `first` s after entering and then
    `interval` s after each restart (which follows each kill at once, on the same home), until told
    to stop. Runs in a thread beside the caller."""

    def __init__(self, platform: ChaosPlatform, times: int, interval: float, first: float | None = None) -> None:
        self.platform = platform
        self.times = times
        self.interval = interval
        self.first = interval if first is None else first
        self.kills = 0
        self.restart_s: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-kill-loop", daemon=True)

    def __enter__(self) -> KillLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while self.kills < self.times and not self._stop.wait(self.interval if self.kills else self.first):
                self.platform.kill9()
                self.kills += 1
                started = time.monotonic()
                self.platform.restart()
                self.restart_s.append(round(time.monotonic() - started, 2))
        except BaseException as exc:  # reported by the test, which checks .error
            self.error = exc


def container_runtime_unavailable() -> str | None:
    """Why this host can't run the container runtime (None if it can): those scenarios skip with it."""
    if os.geteuid() != 0:
        return "the container runtime needs root (run as root, as CI does)"
    from skylift.worker.container import available

    ok, why = available()
    return None if ok else f"the container runtime is unavailable here: {why}"


def leftovers(platform: ChaosPlatform) -> dict[str, int]:
    """What a stopped platform left behind: mounts under its home, its processes (containers included)."""
    with open("/proc/mounts") as f:
        mounts = sum(1 for line in f if f" {platform.home}/" in line)
    # Every container process it was seen with (stop() looks once more), if still the same process.
    containers = {pid for pid, task in platform.seen_containers.items()
                  if alive(pid) and environ(pid).get("SKYLIFT_TASK_ID") == task}
    processes = set(platform._pids()) | containers
    return {"mounts": mounts, "processes": len(processes)}
