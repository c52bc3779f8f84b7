"""What `skylift run` prints when the user's code fails: their frames and the error, not ours."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
APP = str(HERE / "fixtures" / "errors_app.py")
SKYLIFT = [sys.executable, "-m", "skylift.cli.main"]
PLATFORM_FRAME = re.compile(r'File ".*/(skylift|click|concurrent/futures|asyncio|importlib)/|File "<frozen')


def sk(platform, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    full_env = {**os.environ, "SKYLIFT_HOME": str(platform.home), **(env or {})}
    for name in ("SKYLIFT_TRACEBACK", "MODAL_TRACEBACK"):
        if name not in (env or {}):
            full_env.pop(name, None)
    return subprocess.run([*SKYLIFT, *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_remote_exception_shows_the_users_frames_only(platform) -> None:  # type: ignore[no-untyped-def]
    proc = sk(platform, "run", "-q", APP)
    assert proc.returncode == 1
    err = proc.stderr
    lines = err.strip().splitlines()
    assert len(lines) < 15, err
    assert lines[0] == "Traceback (most recent call last):", err
    assert not PLATFORM_FRAME.search(err), err
    # The caller's frame, then the container's, then the error: one traceback, in call order.
    order = [err.index("in main"), err.index("in fails"), err.index("in divide"),
             err.index("ZeroDivisionError: division by zero")]
    assert order == sorted(order), err
    assert "fails.remote(x)" in err and "return 1 / x" in err
    assert "SKYLIFT_TRACEBACK=1" in lines[-1]


def test_full_traceback_on_request(platform) -> None:  # type: ignore[no-untyped-def]
    proc = sk(platform, "run", "-q", APP, env={"SKYLIFT_TRACEBACK": "1"})
    assert proc.returncode == 1
    assert re.search(r'File ".*/click/', proc.stderr) and re.search(r'File ".*/skylift/', proc.stderr)
    assert "Remote traceback:" in proc.stderr and "ZeroDivisionError" in proc.stderr
    # Modal's variable and the flag do the same.
    assert re.search(r'File ".*/click/', sk(platform, "--traceback", "run", "-q", APP).stderr)


def test_syntax_error_points_at_the_users_line(platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken_app.py"
    bad.write_text("import skylift as modal\n\napp = modal.App('broken')\n\ndef f(:\n    pass\n")
    proc = sk(platform, "run", str(bad))
    assert proc.returncode == 1
    assert f'File "{bad}", line 5' in proc.stderr and "def f(:" in proc.stderr and "^" in proc.stderr
    assert "SyntaxError" in proc.stderr and not PLATFORM_FRAME.search(proc.stderr), proc.stderr
    assert len(proc.stderr.strip().splitlines()) < 8, proc.stderr


def test_argument_errors_name_the_parameter_and_option(platform) -> None:  # type: ignore[no-untyped-def]
    proc = sk(platform, "run", APP, "--x", "abc")
    assert proc.returncode == 1
    assert "'--x'" in proc.stderr and "parameter x: int" in proc.stderr and "not a valid integer" in proc.stderr
    proc = sk(platform, "run", f"{APP}::scaled", "--x", "a", "--factor", "two")
    assert proc.returncode == 1 and "parameter factor: int" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = sk(platform, "run", "--bogus", APP)
    assert proc.returncode == 2 and "No such option '--bogus'" in proc.stderr, proc.stderr
    assert "no such file" not in proc.stderr
    proc = sk(platform, "run", "--detatch", APP)
    assert "Did you mean '--detach'?" in proc.stderr


def test_a_token_without_a_server_url_is_refused(platform) -> None:  # type: ignore[no-untyped-def]
    proc = sk(platform, "run", "-q", f"{APP}::scaled", "--x", "a", env={"SKYLIFT_TOKEN": "bad"})
    assert proc.returncode == 1
    assert "SKYLIFT_TOKEN is set but SKYLIFT_SERVER_URL is not" in proc.stderr, proc.stderr
    assert "unset SKYLIFT_TOKEN" in proc.stderr and "Traceback" not in proc.stderr
    # The embedded platform's own token is accepted (e.g. exported from `skylift server`'s hint).
    token = (platform.home / "token").read_text().strip()
    proc = sk(platform, "run", "-q", f"{APP}::scaled", "--x", "a", "--factor", "3", env={"SKYLIFT_TOKEN": token})
    assert proc.returncode == 0, proc.stderr


def test_a_skylift_error_in_the_users_code_shows_their_line(platform, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad_gpu_app.py"
    bad.write_text("import skylift as modal\n\napp = modal.App('bad-gpu')\n\n\n@app.function(gpu='V100')\n"
                   "def f() -> None: ...\n")
    proc = sk(platform, "run", str(bad))
    assert proc.returncode == 1
    assert f'File "{bad}", line 6' in proc.stderr and "gpu='V100'" in proc.stderr, proc.stderr
    assert "skylift.exception.InvalidError" in proc.stderr and not PLATFORM_FRAME.search(proc.stderr)
    # An error about the command itself stays one line.
    proc = sk(platform, "run", str(tmp_path / "missing.py"))
    assert proc.stderr.startswith("Error: no such file") and "Traceback" not in proc.stderr
