"""`skylift shell FILE::fn`: a shell in a fresh container of the function, against the session's platform."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "hello_world.py")
SKYLIFT = [sys.executable, "-m", "skylift.cli.main"]


def shell(platform, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "SKYLIFT_HOME": str(platform.home)}
    return subprocess.run([*SKYLIFT, "shell", "-q", *args], capture_output=True, text=True, env=env, input=stdin,
                          timeout=120)


def _runtime(platform) -> str:  # type: ignore[no-untyped-def]
    return "container" if "runtime: container" in platform.log else "process"


def test_shell_runs_a_command_in_the_functions_container(platform) -> None:  # type: ignore[no-untyped-def]
    proc = shell(platform, f"{EXAMPLE}::f", "--cmd", "ls; python -c 'import sys; print(sys.executable)'; exit 3")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.split()
    assert "hello_world.py" in lines  # the function's source, where the function would see it
    if _runtime(platform) == "container":
        debian = shell(platform, f"{EXAMPLE}::f", "--cmd", "cat /etc/debian_version")
        assert debian.returncode == 0 and debian.stdout.startswith("12."), debian.stderr
        assert lines[-1] == "/opt/skylift-venv/bin/python"


def test_shell_relays_stdin(platform) -> None:  # type: ignore[no-untyped-def]
    proc = shell(platform, f"{EXAMPLE}::f", "--cmd", "tr a-z A-Z", stdin="piped in\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "PIPED IN\n"


def test_shell_needs_a_function(platform) -> None:  # type: ignore[no-untyped-def]
    proc = shell(platform, EXAMPLE)
    assert proc.returncode == 1 and "local entrypoint" in proc.stderr
