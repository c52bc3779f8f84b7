"""`python -m skylift.server` as a real process: files it writes, shutdown, surviving kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import skylift
from conftest import definition
from skylift._protocol import api
from skylift._protocol.rpc import RpcClient

SRC = str(Path(skylift.__file__).resolve().parent.parent)


def _start(home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "skylift.server", "--home", str(home), "--no-worker"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


async def _wait_info(home: Path, proc: subprocess.Popen[bytes]) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            info = json.loads((home / "server.json").read_text())
            if info["pid"] == proc.pid:
                return info
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        await asyncio.sleep(0.05)
    raise AssertionError("server.json never appeared")


async def _connect(url: str, home: Path, role: str = api.ROLE_CLIENT) -> RpcClient:
    token = (home / "token").read_text().strip()
    return await RpcClient.connect(url, {"token": token, "role": role, "version": "test"})


def _finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


async def test_server_process_writes_its_files_and_shuts_down_on_request(home):
    proc = _start(home)
    try:
        info = await _wait_info(home, proc)
        assert info["url"].startswith("tcp://127.0.0.1:") and info["unix_url"] == f"unix://{home}/server.sock"
        assert info["version"] and info["started_at"] > 0
        assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600
        assert (home / "state.db").exists()
        for url in (info["url"], info["unix_url"]):
            client = await _connect(url, home)
            status = await client.call("server.status", {})
            assert status["pid"] == proc.pid and status["workers"] == [] and status["apps_running"] == 0
            await client.close()
        # A second server on the same home refuses to start.
        second = _start(home)
        assert second.wait(20) == 1
        second.stderr.close()  # type: ignore[union-attr]
        client = await _connect(info["unix_url"], home)
        assert await client.call("server.shutdown", {}) == {}
        await client.close()
        assert await asyncio.to_thread(proc.wait, 20) == 0
        assert not (home / "server.json").exists()
    finally:
        _finish(proc)


async def test_sigterm_stops_the_server_cleanly(home):
    proc = _start(home)
    try:
        token_before = None
        await _wait_info(home, proc)
        token_before = (home / "token").read_text()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        assert not (home / "server.json").exists()
    finally:
        _finish(proc)
    proc = _start(home)  # the token is created once and kept
    try:
        await _wait_info(home, proc)
        assert (home / "token").read_text() == token_before
    finally:
        _finish(proc)


async def test_a_spawned_call_survives_kill_9(home):
    proc = _start(home)
    try:
        info = await _wait_info(home, proc)
        client = await _connect(info["unix_url"], home)
        app_id = (await client.call("app.deploy_begin", {"name": "durable", "environment": "main"}))["app_id"]
        fid = (await client.call("function.create", {"app_id": app_id, "definition": definition()}))["function_id"]
        await client.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": {"f": fid}})
        spawned = await client.call("call.start", {"function_id": fid, "inputs": [{"args": b"survive"}],
                                                   "invocation": "async", "kind": "unary"})
        await client.close()
        proc.kill()
        proc.wait(10)
    finally:
        _finish(proc)
    proc = _start(home)
    try:
        info = await _wait_info(home, proc)
        worker = await _connect(info["unix_url"], home, api.ROLE_WORKER)
        await worker.call("worker.register", {"hostname": "t", "resources": {"cpu": 2, "memory_mb": 2048}})
        commands = (await worker.call("worker.poll", {"timeout": 10}))["commands"]
        spec = next(c["task"] for c in commands if c["op"] == "start_task")
        container = await RpcClient.connect(info["unix_url"], {"token": spec["token"], "role": "container",
                                                               "task_id": spec["task_id"], "version": "test"})
        await container.call("container.ready", {})
        [inp] = (await container.call("container.get_inputs", {"max": 1, "timeout": 10}))["inputs"]
        assert inp["args"] == b"survive" and inp["input_id"] == spawned["input_ids"][0]
        await container.call("container.put_outputs", {"outputs": [
            {"input_id": inp["input_id"], "attempt": inp["attempt"], "status": "success", "data": b"alive"}]})
        client = await _connect(info["unix_url"], home)
        got = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 10, "clear": False})
        assert got["outputs"][0]["data"] == b"alive"
        for rpc in (client, container, worker):
            await rpc.close()
    finally:
        _finish(proc)
