"""SIGSTOP of a container past its lease: the input re-runs elsewhere, the frozen container's late
output is rejected, and the caller sees exactly one result."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import chaos_apps
import pytest
from chaos_platform import environ, running
from tiers import Figures

import skylift as modal
from skylift import _serialization
from skylift._client import run_sync
from skylift._protocol import api
from skylift._protocol.rpc import RpcClient, RpcError

LEASE = 3.0


@pytest.mark.timeout(120)
def test_frozen_container_past_its_lease_is_superseded(chaos_home: Path, chaos_figures: Figures) -> None:
    marker = chaos_home / "first-run.json"
    with running(chaos_home, lease=LEASE) as platform:
        chaos_apps.app.deploy(name="chaos")
        stall = modal.Function.from_name("chaos", "stall")
        call = stall.spawn(str(marker), 2.0)
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline, "the first run never started"
            time.sleep(0.01)
        first = json.loads(marker.read_text().splitlines()[0])
        identity = environ(first["pid"])  # its task id and token, to send its late output ourselves
        os.kill(first["pid"], signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            result = call.get(timeout=60)
            rerun_after = time.monotonic() - frozen_at
        finally:
            # The platform may have killed the frozen container meanwhile; then nothing late can come.
            try:
                os.kill(first["pid"], signal.SIGCONT)
                woke = True
            except ProcessLookupError:
                woke = False
        # The frozen run wakes past its sleep and sends its (late) output at once; give it time to land.
        time.sleep(3.0)
        # Whether or not the platform killed the frozen container, send its output as it would have:
        # from its own connection, for the attempt it was leased.
        late_answer = run_sync(_late_output(platform.home, identity, first["input_id"]))
        again = modal.FunctionCall.from_id(call.object_id).get(timeout=10)
        chaos_figures.values.update(lease_s=LEASE, rerun_after_s=round(rerun_after, 1), frozen_woke=woke,
                                    late_output_answer=late_answer, first_pid=first["pid"],
                                    result_pid=result["pid"], result_first=result["first"],
                                    after_wake_first=again["first"])
        assert result["first"] is False, f"the caller got the frozen container's output: {result}"
        assert result["input_id"] == first["input_id"]
        assert again == result, f"the late output replaced the accepted one: {again} != {result}"


async def _late_output(home: Path, identity: dict[str, str], input_id: str) -> str:
    """Put the frozen run's output (attempt 1) as that container; what the control plane answered."""
    hello = {"token": identity["SKYLIFT_TASK_TOKEN"], "task_id": identity["SKYLIFT_TASK_ID"],
             "role": api.ROLE_CONTAINER, "version": "chaos"}
    output = {"input_id": input_id, "attempt": 1,
              **_serialization.success_output({"first": True, "pid": 0, "input_id": input_id})}
    try:
        rpc = await RpcClient.connect(f"unix://{home / 'server.sock'}", hello)
    except RpcError as exc:
        return f"hello refused: {exc.code}"
    try:
        await rpc.call("container.put_outputs", {"outputs": [output]})
        return "accepted"
    except RpcError as exc:
        return f"refused: {exc.code}"
    finally:
        await rpc.close()
