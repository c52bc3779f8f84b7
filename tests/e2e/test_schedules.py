"""A real schedule on a deployed app, the schedule CLI, and `skylift serve` reloading a web endpoint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from apps import scheduled
from click.testing import CliRunner

from skylift._client import Client, run_sync
from skylift.cli.main import cli


def _ticks(app_id: str) -> list[str]:
    got = run_sync(Client.from_env().call("app.logs", {"app_id": app_id, "after_seq": 0, "timeout": 0.5}))
    return [e["text"] for e in got["entries"] if "tick at" in e["text"]]


def test_period_schedule_runs_pauses_and_resumes(platform: object) -> None:
    scheduled.app.deploy()
    app_id = scheduled.app.app_id
    assert app_id is not None
    try:
        deadline = time.monotonic() + 30
        while len(_ticks(app_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_ticks(app_id)) >= 2

        runner = CliRunner()
        listed = runner.invoke(cli, ["schedule", "list", "e2e-scheduled"])
        assert listed.exit_code == 0, listed.output
        assert "tick" in listed.output and "every 1 seconds" in listed.output
        paused = runner.invoke(cli, ["schedule", "pause", "e2e-scheduled", "tick"])
        assert paused.exit_code == 0, paused.output
        time.sleep(1.5)  # a run started just before the pause may still log
        count = len(_ticks(app_id))
        time.sleep(2.5)
        assert len(_ticks(app_id)) == count
        assert "paused" in runner.invoke(cli, ["app", "schedules"]).output
        resumed = runner.invoke(cli, ["schedule", "resume", "e2e-scheduled", "tick"])
        assert resumed.exit_code == 0, resumed.output
        deadline = time.monotonic() + 20
        while len(_ticks(app_id)) == count and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_ticks(app_id)) > count
    finally:
        run_sync(Client.from_env().call("app.stop", {"name": "e2e-scheduled", "environment": "main"}))


SERVED = '''
import skylift as modal

app = modal.App("e2e-serve")


async def raw_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"VERSION"})


@app.function()
@modal.asgi_app()
def web():
    return raw_app
'''


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _wait_for(url: str, body: bytes, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _get(url) == (200, body):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {body!r}; last: {_get(url)}")


def test_serve_reloads_on_change(platform: object, tmp_path: Path) -> None:
    source = tmp_path / "served_app.py"
    source.write_text(SERVED.replace("VERSION", "v1"))
    env: dict[str, Any] = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "skylift.cli.main", "serve", str(source), "--timeout", "120"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
    assert proc.stderr is not None
    drain = threading.Thread(target=proc.stderr.read, daemon=True)
    try:
        url = ""
        lines = []
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            line = proc.stderr.readline().decode()
            lines.append(line)
            found = re.search(r"=> (http://\S+)", line)
            if found:
                url = found.group(1)
        assert url.endswith("/main-e2e-serve-web-dev"), "".join(lines)
        drain.start()  # keep the pipe from filling up with the app's logs
        _wait_for(url, b"v1", 60)
        source.write_text(SERVED.replace("VERSION", "v2"))
        took = _wait_for(url, b"v2", 30)
        assert took < 10
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        status, _ = _get(url)
        assert status == 404  # the app is gone with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if drain.is_alive():
            drain.join(10)
        proc.stderr.close()
