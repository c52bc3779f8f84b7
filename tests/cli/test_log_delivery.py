"""Every line a container writes reaches the terminal before the command exits (the log barrier).

Counted, not sampled: `skylift run` of an app whose map prints 200 lines and whose containers
print in `@enter` and `@exit` must print every one of them, right after a fresh platform start and
warm, on this host's default runtime and on the process runtime; `deploy --stream-logs` and
`app logs -f` must print every line through the app's stop, and `serve` its containers' `@exit`
lines when it is stopped. Each is checked against the lines the
control plane stored, and per container and stream the map's lines must come in order.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

APP = str(Path(__file__).parent / "fixtures" / "log_delivery_app.py")
SERVE_APP = str(Path(__file__).parent / "fixtures" / "log_delivery_serve_app.py")
SKYLIFT = [sys.executable, "-m", "skylift.cli.main"]
N = 200
MARKERS = ("ENTER-LINE", "MAP-LINE", "EXIT-LINE", "EXIT-ERR-LINE")


def _sk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*SKYLIFT, *args], capture_output=True, text=True, env=env, timeout=100)
    assert proc.returncode == 0, f"skylift {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _container_lines(*texts: str) -> list[str]:
    return [line for text in texts for line in text.splitlines() if line.startswith(MARKERS)]


def _check_every_line(stdout: str, stderr: str, stored: list[str]) -> None:
    printed = _container_lines(stdout, stderr)
    assert collections.Counter(printed) == collections.Counter(stored), (
        f"printed {len(printed)} container lines, the control plane stored {len(stored)}:\n"
        f"missing {sorted((collections.Counter(stored) - collections.Counter(printed)).elements())[:20]}")
    maps = [line.split() for line in printed if line.startswith("MAP-LINE")]
    assert sorted(int(i) for _, i, _ in maps) == list(range(N))
    # Every container that ran an input was set up, so stopping the app ran its @exit hook, and both
    # of the hook's lines (stdout and stderr) were printed.
    served = {task for _, _, task in maps}
    assert served and all(f"EXIT-LINE {t}" in printed and f"EXIT-ERR-LINE {t}" in printed for t in served), printed
    # In order per container and stream (odd inputs print to stderr).
    for stream_text in (stdout, stderr):
        seen: dict[str, list[int]] = collections.defaultdict(list)
        for line in _container_lines(stream_text):
            if line.startswith("MAP-LINE"):
                _, i, task = line.split()
                seen[task].append(int(i))
        assert all(order == sorted(order) for order in seen.values()), seen


def _stored_lines(env: dict[str, str], app_id: str) -> list[str]:
    proc = _sk(env, "app", "logs", app_id, "-n", "0")
    return _container_lines(proc.stdout, proc.stderr)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("runtime", ["default", "process"])
def test_run_prints_every_container_line_even_right_after_platform_start(runtime: str) -> None:
    # A home of its own: the first `run` starts the platform itself, as a new user's first run does.
    home = tempfile.mkdtemp(prefix="sk-logs-")  # short: the control plane's unix socket lives here
    env = {**os.environ, "SKYLIFT_HOME": home}
    env.pop("SKYLIFT_SERVER_URL", None)
    env.pop("SKYLIFT_TOKEN", None)
    if runtime == "process":
        env["SKYLIFT_RUNTIME"] = "process"
    else:
        env.pop("SKYLIFT_RUNTIME", None)
    try:
        result = Path(home) / "result.txt"
        for _ in range(2):  # cold (just started), then warm
            proc = _sk(env, "run", "-w", str(result), APP, "--n", str(N))
            assert result.read_text() == str(N * (N - 1) // 2)
            found = re.search(r"App (ap-\w+)", proc.stderr)
            assert found, proc.stderr
            _check_every_line(proc.stdout, proc.stderr, _stored_lines(env, found.group(1)))
            assert "may be missing" not in proc.stderr
    finally:
        subprocess.run([*SKYLIFT, "server", "stop"], capture_output=True, env=env, timeout=60)
        if home not in Path("/proc/self/mounts").read_text():  # never delete through a leftover mount
            shutil.rmtree(home, ignore_errors=True)


class _Reader:
    """A subprocess whose output is read as it comes (so a test can wait for a line)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(pipe: object, into: list[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            into.append(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.out + self.err):
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{''.join(self.out + self.err)}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(self.out + self.err)}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> tuple[str, str]:
        try:
            code = self.proc.wait(timeout)
        finally:
            self.close()
        assert code == 0, "".join(self.out + self.err)
        return "".join(self.out), "".join(self.err)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for t in self._threads:
            t.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.timeout(180)
def test_deploy_stream_logs_and_app_logs_follow_print_every_line_through_the_stop(platform) -> None:  # type: ignore[no-untyped-def]
    import skylift

    env = {**os.environ, "SKYLIFT_HOME": str(platform.home)}
    name = "log-delivery-follow"
    deploy = _Reader([*SKYLIFT, "deploy", APP, "--name", name, "--stream-logs"], env)
    follow: _Reader | None = None
    try:
        deploy.wait_for("App deployed", 90)
        follow = _Reader([*SKYLIFT, "app", "logs", name, "-f", "-n", "0"], env)
        printer = skylift.Cls.from_name(name, "Printer")()
        assert sum(printer.say.map(range(N))) == N * (N - 1) // 2
        stopped = _sk(env, "app", "stop", name, "-y")
        found = re.search(r"\((ap-\w+)\)", stopped.stdout)
        assert found, stopped.stdout
        # Both end by themselves once the app's containers have exited and their last lines are out.
        followed = follow.finish(60)
        streamed = deploy.finish(60)
    finally:
        for reader in (deploy, follow):
            if reader is not None:
                reader.close()
    stored = _stored_lines(env, found.group(1))
    _check_every_line(*streamed, stored)
    _check_every_line(*followed, stored)


@pytest.mark.timeout(120)
def test_serve_prints_its_containers_exit_lines_when_stopped(platform) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "SKYLIFT_HOME": str(platform.home)}
    served = _Reader([*SKYLIFT, "serve", SERVE_APP], env)
    try:
        served.wait_for("ENTER-LINE", 90)  # its warm container is up
        served.proc.send_signal(signal.SIGINT)  # Ctrl-C: serve stops the app and waits for the last lines
        out, err = served.finish(60)
    finally:
        served.close()
    entered = {line.split()[1] for line in _container_lines(out) if line.startswith("ENTER-LINE")}
    exited = {line.split()[1] for line in _container_lines(out) if line.startswith("EXIT-LINE")}
    assert entered and entered == exited, out + err
    assert "Stopped serving" in err and "may be missing" not in err
