"""The CLI as a user runs it, against the session's real platform."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
APP = str(HERE / "fixtures" / "cli_app.py")
SKYLIFT = [sys.executable, "-m", "skylift.cli.main"]


def sk(platform, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "SKYLIFT_HOME": str(platform.home)}
    proc = subprocess.run([*SKYLIFT, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"skylift {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_run_local_entrypoint_streams_logs_and_parses_args(platform) -> None:  # type: ignore[no-untyped-def]
    proc = sk(platform, "run", APP, "--n", "21", "--tag", "x")
    assert "result x 42" in proc.stdout
    assert "doubling 21" in proc.stdout  # the container's print reached this terminal
    assert "Created function double" in proc.stderr and "App completed" in proc.stderr


def test_run_single_function_and_quiet(platform) -> None:  # type: ignore[no-untyped-def]
    proc = sk(platform, "run", "-q", f"{APP}::double", "--x", "5")
    assert proc.stderr == "" and "doubling" not in proc.stdout


def test_bad_refs_are_clear_errors(platform) -> None:  # type: ignore[no-untyped-def]
    proc = sk(platform, "run", f"{APP}::not_decorated", check=False)
    assert proc.returncode == 1 and "not a skylift function" in proc.stderr and "@app.function()" in proc.stderr
    proc = sk(platform, "run", f"{APP}::nope", check=False)
    assert proc.returncode == 1 and "choose one of" in proc.stderr and "double" in proc.stderr
    proc = sk(platform, "run", "missing.py", check=False)
    assert proc.returncode == 1 and "no such file" in proc.stderr
    proc = sk(platform, "run", APP, "--n", "abc", check=False)
    assert proc.returncode == 1 and "not a valid integer" in proc.stderr


def test_deploy_list_history_logs_stop(platform) -> None:  # type: ignore[no-untyped-def]
    proc = sk(platform, "deploy", APP)
    assert "App deployed" in proc.stderr and "v1" in proc.stderr
    sk(platform, "deploy", APP, "--tag", "second")
    history = sk(platform, "app", "history", "cli-app").stdout
    assert "v1" in history and "v2" in history and "second" in history
    listing = sk(platform, "app", "list").stdout
    assert "cli-app" in listing and "deployed" in listing
    code = ("import skylift as m; print(m.Function.from_name('cli-app', 'double').remote(4))")
    env = {**os.environ, "SKYLIFT_HOME": str(platform.home)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "8", out.stderr
    logs = sk(platform, "app", "logs", "cli-app").stdout
    assert "doubling 4" in logs
    sk(platform, "app", "stop", "cli-app")
    assert "stopped" in sk(platform, "app", "list").stdout
    proc = sk(platform, "app", "logs", "no-such-app", check=False)
    assert proc.returncode == 1 and "no-such-app" in proc.stderr


def test_module_flag_and_env_option(platform, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "SKYLIFT_HOME": str(platform.home), "PYTHONPATH": str(HERE / "fixtures")}
    proc = subprocess.run([*SKYLIFT, "run", "-m", "cli_app", "--env", "staging", "--n", "2"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "result t 4" in proc.stdout and "environment 'staging'" in proc.stderr


def test_server_status(platform) -> None:  # type: ignore[no-untyped-def]
    out = sk(platform, "server", "status").stdout
    assert f"pid: {platform.pid}" in out


def test_run_detached_keeps_the_app(platform) -> None:  # type: ignore[no-untyped-def]
    sk(platform, "run", "-d", "-n", "detached-run", APP, "--n", "1")
    rows = [line for line in sk(platform, "app", "list").stdout.splitlines() if "detached-run" in line]
    assert rows and "detached" in rows[0]
    sk(platform, "app", "stop", rows[0].split()[0])
