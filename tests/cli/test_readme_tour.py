"""Every command of the README runs, as a new user would type it.

The README's ```bash blocks are parsed, not copied: a command added to the README must either run
here or be skipped below with its reason. They run in order in one shell-like sequence (the tour
deploys before it calls the deployed function) against a real embedded platform that the first
command starts, in a temporary SKYLIFT_HOME with SKYLIFT_RUNTIME=process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

# Commands that can't run inside a test, and why.
SKIPPED = {
    "scripts/demo": "creates the virtualenv (pip, minutes); then runs the tour's first `skylift run`",
    "scripts/test": "the whole test suite, this test included",
    "skylift server --host 0.0.0.0 --port 7410": "a shared server in the foreground on a fixed public port, forever; "
                                                 "tests/server start shared servers on free ports",
    ".venv/bin/python bench/run.py": "the benchmarks take minutes of a shared machine; bench/ is run by hand",
    ".venv/bin/python bench/run.py --quick": "a benchmark smoke run, tens of seconds; bench/ is run by hand",
    ".venv/bin/python bench/cold_start.py": "a benchmark (~15 s of cold starts), run by hand",
    "sudo .venv/bin/python bench/cold_start.py --runtime container": "a benchmark of the container runtime, by hand",
    "sudo .venv/bin/python bench/containers.py": "a benchmark of the container runtime, by hand",
}
# Lines that stand for several commands: `a|b ID` in the README.
EXPANDED = {
    "skylift container logs|exec|profile|stop ID": [
        "skylift container logs {container}", "skylift container exec {container} echo from-the-container",
        "skylift container profile {container}", "skylift container stop {container}"],
    "skylift server status | stop": ["skylift server status", "skylift server stop"],
}
# What each command must print (stdout and stderr together), beyond exiting 0.
EXPECT = {
    "skylift run examples/hello_world.py": ["1000000", "2646700"],  # f.local(1000), the sum over the map
    "skylift run examples/hello_world.py::f --i 4": ["hello 4"],
    "skylift deploy examples/hello_world.py": ["example-hello-world"],
    "python -c \"import skylift as m; print(m.Function.from_name('example-hello-world', 'f').remote(3))\"": ["9\n"],
    "skylift app list": ["example-hello-world", "deployed"],
    "skylift app history example-hello-world": ["v1"],
    "skylift container list": ["example-hello-world"],
    "skylift container exec {container} echo from-the-container": ["from-the-container"],
    "skylift container profile {container}": ["boot"],
    "skylift schedule list": [],
    "skylift app stop example-hello-world": [],
    "skylift server status": ["pid"],
}
FOLLOW_SECONDS = 3.0  # `-f` follows forever: it must still be running, having printed the app's logs
SERVE_SECONDS = 90.0  # `skylift serve` builds the web image (fastapi) once, then serves until interrupted


def readme_commands(text: str) -> list[str]:
    """The commands of the README's bash blocks, comments and continuation-comment lines dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_readme_commands_are_parsed() -> None:
    commands = readme_commands(README.read_text())
    assert "skylift run examples/hello_world.py::f --i 4" in commands
    assert "skylift server status | stop" in commands and "source .venv/bin/activate" in commands
    assert not [c for c in commands if c.startswith("#") or "  #" in c]


@pytest.fixture
def tour_env() -> Iterator[dict[str, str]]:
    if not (BIN / "skylift").exists():
        pytest.skip(f"the skylift command isn't installed beside {sys.executable}")
    with tempfile.TemporaryDirectory(prefix="skylift-tour-") as home:
        env = {**os.environ, "SKYLIFT_HOME": home, "SKYLIFT_RUNTIME": "process",
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        for name in ("SKYLIFT_SERVER_URL", "SKYLIFT_TOKEN", "SKYLIFT_TRACEBACK"):
            env.pop(name, None)
        try:
            yield env
        finally:  # the tour stops its platform itself; this is for a tour that failed half-way
            subprocess.run([str(BIN / "skylift"), "server", "stop"], env=env, capture_output=True, timeout=60)


def _shell(command: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _follow(command: str, env: dict[str, str]) -> str:
    try:
        proc = _shell(command, env, timeout=FOLLOW_SECONDS)
    except subprocess.TimeoutExpired as exc:
        return "".join(out.decode() if isinstance(out, bytes) else out for out in (exc.stdout, exc.stderr) if out)
    raise AssertionError(f"`{command}` exited ({proc.returncode}) instead of following:\n{proc.stdout}{proc.stderr}")


def _serve(command: str, env: dict[str, str]) -> str:
    """Serve until the hello endpoint answers on its -dev URL, then Ctrl-C, as a user would."""
    # Its wait for the stopped app's last log lines is bounded by SKYLIFT_LOGS_TIMEOUT (10 s by default).
    env = {**env, "SKYLIFT_LOGS_TIMEOUT": "3"}
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + SERVE_SECONDS
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            seen.append(line)
            url = url or next(iter(re.findall(r"(http://\S+-hello-dev)", line)), None)
            if url and ("Serving" in line or "Watching" in line):
                break
            assert time.monotonic() < deadline, "".join(seen)
        assert url, "".join(seen)
        with urllib.request.urlopen(f"{url}?name=tour", timeout=60) as response:
            assert json.loads(response.read()) == {"hello": "tour"}
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        seen.append(rest)
        assert proc.returncode in (0, 130), "".join(seen)
        return "".join(seen)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _container_id(env: dict[str, str]) -> str:
    listing = json.loads(_shell("skylift container list --json", env).stdout)
    ready = [c["task_id"] for c in listing if c["app_name"] == "example-hello-world" and c["state"] == "ready"]
    assert ready, listing
    return str(ready[0])


@pytest.mark.timeout(400)
def test_every_readme_command_runs(tour_env: dict[str, str]) -> None:
    ran: list[str] = []
    for line in readme_commands(README.read_text()):
        if line in SKIPPED:
            continue
        if line == "source .venv/bin/activate" and not (ROOT / ".venv").exists():
            continue  # the tests run inside a virtualenv elsewhere; BIN is on PATH instead
        templates = EXPANDED.get(line, [line])
        container = _container_id(tour_env) if any("{container}" in t for t in templates) else ""
        for template in templates:
            assert "|" not in template and " ID" not in template, (
                f"README command {template!r} stands for several: add it to EXPANDED or SKIPPED in {__file__}")
            command = template.format(container=container)
            if command.endswith(" -f"):
                out = _follow(command, tour_env)
                assert "world 3" in out, out  # the deployed f's print from the `python -c` line
            elif command.startswith("skylift serve "):
                out = _serve(command, tour_env)
            else:
                proc = _shell(command, tour_env)
                out = proc.stdout + proc.stderr
                assert proc.returncode == 0, f"`{command}` failed ({proc.returncode}):\n{out}"
            for expected in EXPECT.get(template, []):
                assert expected in out, f"`{command}` didn't print {expected!r}:\n{out}"
            ran.append(command)
    assert len(ran) >= 17, ran
