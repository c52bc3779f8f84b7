"""What each kind of container end costs (docs/faults.md), on a real control plane with fake workers.

The reproductions of issue 9's findings 4 and 5: an outside kill during a cold start, several starts
killed at once, a function whose import always fails (sync inputs fail, spawned ones wait for a fixed
deploy), and a worker that dies while its containers boot.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

from conftest import FakeWorker, Harness, definition
from skylift._protocol import api


async def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _exited(worker: FakeWorker, task_id: str, exit_code: int | None, *, signal_number: int | None = None,
                  cause: str | None = None, message: str = "") -> None:
    event: dict[str, Any] = {"task_id": task_id, "state": "exited", "message": message}
    if exit_code is not None:
        event["exit_code"] = exit_code
    if signal_number is not None:
        event["signal"] = signal_number
    if cause is not None:
        event["cause"] = cause
    await worker.rpc.call("worker.report", {"events": [event]})


async def _deploy(client: Any, name: str, *defs: dict[str, Any]) -> dict[str, str]:
    app_id = (await client.call("app.deploy_begin", {"name": name, "environment": "main"}))["app_id"]
    ids = {}
    for d in defs:
        ids[d["tag"]] = (await client.call("function.create", {"app_id": app_id, "definition": d}))["function_id"]
    await client.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": ids})
    return ids


async def _serve_all(h: Harness, worker: FakeWorker, n: int) -> None:
    """Bring up the next container and answer `n` inputs with their args."""
    container = await h.started_container(worker)
    done = 0
    while done < n:
        inputs = await container.next_inputs(max=100)
        await container.put_many([{"input_id": i["input_id"], "attempt": i["attempt"], "status": api.STATUS_SUCCESS,
                                   "data": i["args"]} for i in inputs])
        done += len(inputs)


async def _system_lines(client: Any, app_id: str) -> list[str]:
    got = await client.call("app.logs", {"app_id": app_id, "after_seq": 0, "timeout": 0, "limit": 1000})
    return [e["text"] for e in got["entries"] if e["stream"] == "system"]


async def test_outside_kills_during_cold_starts_fail_neither_a_map_nor_spawned_calls(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        app_id, ids = await h.app(client, definition(autoscaler={"max_containers": 1}))
        mapped = await client.call("call.start", {"function_id": ids["f"], "invocation": "sync", "kind": "map",
                                                  "inputs": [{"args": bytes([i])} for i in range(20)]})
        spawned = [await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"s%d" % i}],
                                                    "invocation": "async", "kind": "unary"}) for i in range(5)]
        # More kills than the crash limit, each its own event, each before the container was ready.
        for _ in range(h.cp.settings.startup_crash_limit + 2):
            command = await worker.next("start_task")
            await worker.report(command["task"]["task_id"], "running")
            await _exited(worker, command["task"]["task_id"], 128 + signal.SIGKILL, signal_number=signal.SIGKILL,
                          message="killed by signal 9")
            h.advance(h.cp.settings.crash_backoff_max)  # separate events (and past any backoff)
        await _serve_all(h, worker, 25)
        got = await client.call("call.get_outputs", {"call_id": mapped["call_id"], "timeout": 5, "clear": True,
                                                     "max": 100})
        while len(got["outputs"]) < 20:
            more = await client.call("call.get_outputs", {"call_id": mapped["call_id"], "timeout": 5, "clear": True,
                                                          "max": 100})
            got["outputs"] += more["outputs"]
        assert sorted(o["data"] for o in got["outputs"]) == [bytes([i]) for i in range(20)]
        assert {o["status"] for o in got["outputs"]} == {api.STATUS_SUCCESS}
        for n, started in enumerate(spawned):
            out = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": False})
            assert out["outputs"][0]["status"] == api.STATUS_SUCCESS and out["outputs"][0]["data"] == b"s%d" % n
        await asyncio.sleep(0.1)  # system log lines are written in the background
        said = [line for line in await _system_lines(client, app_id) if "before it was ready" in line]
        assert len(said) == h.cp.settings.startup_crash_limit + 2
        assert all("[outside_kill: killed by SIGKILL, which skylift did not send;" in line for line in said), said


async def test_several_starts_killed_at_once_do_not_fail_the_pool(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker(cpu=64, memory_mb=65536)
        # A burst starts one container until the pool's speed is measured (autoscaler.py); the buffer
        # makes the first call start four at once.
        _, ids = await h.app(client, definition(autoscaler={"min_containers": 0, "max_containers": None,
                                                            "buffer_containers": 3, "scaledown_window": 60}))
        mapped = await client.call("call.start", {"function_id": ids["f"], "invocation": "sync", "kind": "map",
                                                  "inputs": [{"args": bytes([i])} for i in range(6)]})
        starts = [await worker.next("start_task") for _ in range(4)]
        for command in starts:  # one `pkill -9`: every starting container dies in the same instant
            await _exited(worker, command["task"]["task_id"], 137)
        await _serve_all(h, worker, 6)
        got = await client.call("call.get_outputs", {"call_id": mapped["call_id"], "timeout": 5, "clear": True,
                                                     "max": 100})
        while len(got["outputs"]) < 6:
            got["outputs"] += (await client.call("call.get_outputs", {"call_id": mapped["call_id"], "timeout": 5,
                                                                      "clear": True, "max": 100}))["outputs"]
        assert {o["status"] for o in got["outputs"]} == {api.STATUS_SUCCESS}
        assert h.cp.pools.all()[0].crash.streak == 0


async def test_a_function_that_always_crashes_fails_sync_inputs_but_spawned_ones_wait_for_a_fixed_deploy(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        ids = await _deploy(client, "crashy", definition("f", env={"V": "1"}, autoscaler={"max_containers": 1}))
        spawned = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"later"}],
                                                   "invocation": "async", "kind": "unary"})
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"now"},
                                                             "timeout": 10}))
        for n in range(h.cp.settings.startup_crash_limit):
            if n:
                h.advance(h.cp.settings.crash_backoff_max)  # past the crash-loop backoff
            command = await worker.next("start_task")
            await _exited(worker, command["task"]["task_id"], 1, message="ImportError: boom")
        output = (await run)["output"]
        assert output["status"] == api.STATUS_INIT_FAILURE and "ImportError: boom" in output["exc_message"]
        assert "3 times in a row" in output["exc_message"]
        # A new sync call fails at once while the pool is given up on; the spawned input still waits.
        again = await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"again"}, "timeout": 10})
        assert again["output"]["status"] == api.STATUS_INIT_FAILURE
        waiting = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 0.2,
                                                         "clear": False})
        assert waiting["outputs"] == []
        await worker.no_command("start_task")  # the next try of the old code waits out its backoff
        # The fixed code goes live: the pool starts at once (no backoff) and the spawned input runs.
        await _deploy(client, "crashy", definition("f", env={"V": "2"}, autoscaler={"max_containers": 1}))
        container = await h.started_container(worker)
        assert (await container.init())["definition"]["env"] == {"V": "2"}
        [inp] = await container.next_inputs()
        assert inp["args"] == b"later" and inp["attempt"] == 1
        await container.put(inp, data=b"fixed")
        got = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"][0]["status"] == api.STATUS_SUCCESS and got["outputs"][0]["data"] == b"fixed"


async def test_an_init_failure_fails_sync_inputs_and_keeps_spawned_ones_of_a_deployed_app(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        ids = await _deploy(client, "broken", definition("f", autoscaler={"max_containers": 1}))
        spawned = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"kept"}],
                                                   "invocation": "async", "kind": "unary"})
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        command = await worker.next("start_task")
        container = await h.container(command["task"])
        await container.init()
        await asyncio.sleep(0.05)  # both inputs are queued before the failure
        await container.rpc.call("container.init_failed", {"error": "ModuleNotFoundError: No module named 'numpy'",
                                                           "traceback": "Traceback ..."})
        output = (await run)["output"]
        assert output["status"] == api.STATUS_INIT_FAILURE and "numpy" in output["exc_message"]
        waiting = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 0.2,
                                                         "clear": False})
        assert waiting["outputs"] == []
        await _deploy(client, "broken", definition("f", env={"FIXED": "1"}))
        fixed = await h.started_container(worker)
        [inp] = await fixed.next_inputs()
        assert inp["args"] == b"kept"
        await fixed.put(inp, data=b"ok")
        got = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"][0]["data"] == b"ok"


async def test_stopping_an_app_still_fails_its_waiting_spawned_inputs(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        ids = await _deploy(client, "doomed", definition("f", autoscaler={"max_containers": 1}))
        spawned = await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"x"}],
                                                   "invocation": "async", "kind": "unary"})
        for _ in range(h.cp.settings.startup_crash_limit):
            command = await worker.next("start_task")
            await _exited(worker, command["task"]["task_id"], 1, message="ImportError: boom")
            h.advance(h.cp.settings.crash_backoff_max)
        app_id = h.cp.catalog.functions[ids["f"]].app.app_id
        await client.call("app.stop", {"app_id": app_id})
        got = await client.call("call.get_outputs", {"call_id": spawned["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"] and got["outputs"][0]["status"] != api.STATUS_SUCCESS


async def test_a_worker_whose_process_exited_is_written_off_at_once(platform):
    async with platform() as h:
        client = await h.client()
        doomed = await h.worker()
        _, ids = await h.app(client, definition(autoscaler={"max_containers": 1}))
        mapped = await client.call("call.start", {"function_id": ids["f"], "invocation": "sync", "kind": "map",
                                                  "inputs": [{"args": bytes([i])} for i in range(10)]})
        command = await doomed.next("start_task")  # booting when its worker dies (kill -9)
        await doomed.report(command["task"]["task_id"], "running")
        other = await h.worker()
        await other.no_command("start_task")  # the cap (1) is taken by the dead worker's container
        # What the embedded worker's supervisor does when it sees the process exit: no grace, no clock.
        h.cp.worker_api.lose_by_id(doomed.worker_id, "the worker agent process exited (code -9)")
        assert h.cp.tasks.get(command["task"]["task_id"]) is None
        assert h.cp.workers.get(doomed.worker_id) is None
        await _serve_all(h, other, 10)
        outputs: list[dict[str, Any]] = []
        while len(outputs) < 10:
            outputs += (await client.call("call.get_outputs", {"call_id": mapped["call_id"], "timeout": 5,
                                                               "clear": True, "max": 100}))["outputs"]
        assert {o["status"] for o in outputs} == {api.STATUS_SUCCESS}
        assert h.cp.pools.all()[0].crash.streak == 0


async def test_a_worker_that_comes_back_without_its_containers_has_them_written_off(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        lost = await h.started_container(worker)
        [inp] = await lost.next_inputs()
        await lost.close()
        await worker.close()
        # A new process under the same worker id (restarted by its supervisor) has none of them.
        rpc = await h.connect(api.ROLE_WORKER)
        await rpc.call("worker.register", {"worker_id": worker.worker_id, "hostname": "test",
                                           "resources": {"cpu": 4, "memory_mb": 8192, "gpus": {}},
                                           "labels": {}, "runtimes": ["process"], "task_ids": []})
        back = FakeWorker(rpc, worker.worker_id)
        assert h.cp.tasks.get(lost.task_id) is None
        replacement = await h.started_container(back)
        [again] = await replacement.next_inputs()
        assert again["input_id"] == inp["input_id"] and again["attempt"] == 1
        await replacement.put(again, data=b"ok")
        assert (await run)["output"]["data"] == b"ok"
        await back.close()


async def test_a_worker_that_reconnects_keeps_the_containers_it_reports(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"},
                                                             "timeout": 10}))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await worker.close()
        rpc = await h.connect(api.ROLE_WORKER)
        await rpc.call("worker.register", {"worker_id": worker.worker_id, "hostname": "test",
                                           "resources": {"cpu": 4, "memory_mb": 8192, "gpus": {}},
                                           "labels": {}, "runtimes": ["process"], "task_ids": [container.task_id]})
        assert h.cp.tasks.get(container.task_id) is not None
        await container.put(inp, data=b"kept")
        assert (await run)["output"]["data"] == b"kept"
        await rpc.close()


async def test_a_disconnected_worker_is_written_off_after_its_short_grace(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        await client.call("call.start", {"function_id": ids["f"], "inputs": [{"args": b"x"}],
                                         "invocation": "async", "kind": "unary"})
        command = await worker.next("start_task")
        await worker.close()
        await asyncio.sleep(0.05)
        assert h.cp.settings.worker_grace < api.LEASE_SECONDS
        h.advance(h.cp.settings.worker_grace + 1)
        await _wait_for(lambda: h.cp.tasks.get(command["task"]["task_id"]) is None)


async def test_the_supervisor_reports_the_worker_process_exit_at_once(home, monkeypatch):
    from skylift.server import embedded_worker
    from skylift.server.embedded_worker import WorkerSupervisor

    monkeypatch.setattr(embedded_worker, "MIN_BACKOFF", 30.0)  # no restart during the test
    exits: list[int] = []
    supervisor = WorkerSupervisor("unix:///unused", home, worker_id="wk-1", on_exit=exits.append)
    assert supervisor.command[-2:] == ["--worker-id", "wk-1"]
    supervisor.command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    supervisor.start()
    try:
        await _wait_for(lambda: bool(exits))
    finally:
        await supervisor.stop()
    assert exits == [-signal.SIGKILL]


async def test_stop_reaps_what_a_worker_it_had_to_kill_left(home, monkeypatch):
    from skylift.server import embedded_worker
    from skylift.server.embedded_worker import WorkerSupervisor

    monkeypatch.setattr(embedded_worker, "STOP_TIMEOUT", 0.5)
    supervisor = WorkerSupervisor("unix:///unused", home)
    assert supervisor.reap_command[-3:] == ["--reap-only", "--home", str(home)]
    ready, reaped = home / "ready", home / "reaped"
    supervisor.command = [sys.executable, "-c", "import pathlib, signal, time; signal.signal(signal.SIGTERM, "
                          f"signal.SIG_IGN); pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"]
    supervisor.reap_command = [sys.executable, "-c", f"import pathlib; pathlib.Path({str(reaped)!r}).touch()"]
    supervisor.start()
    await _wait_for(ready.exists, timeout=30)
    await supervisor.stop()  # SIGTERM is ignored: killed after STOP_TIMEOUT, then the reaper runs
    assert reaped.exists()
