"""Commands a person runs against one container (`skylift container exec`), relayed by the control plane.

    control plane ──worker.poll──▶ {op: "exec_task", exec_id, task_id, argv, timeout}
    worker: runtime.exec(...) ──worker.exec_result──▶ {exec_id, exit_code, output} | {exec_id, error}

The command runs with the container's environment and working directory (inside its namespaces
for the container runtime). Its output is capped so one noisy command can't flood the connection.
"""

from __future__ import annotations

import logging
from typing import Any

from .._protocol.rpc import RpcError
from .._runtime.connection import ReconnectingClient
from .runtime import ContainerRuntime

log = logging.getLogger("skylift.worker")

MAX_EXEC_OUTPUT = 1024 * 1024
DEFAULT_EXEC_TIMEOUT = 60.0


async def run_exec(rpc: ReconnectingClient, runtime: ContainerRuntime, command: dict[str, Any]) -> None:
    exec_id = str(command.get("exec_id") or "")
    task_id = str(command.get("task_id") or "")
    argv = command.get("argv")
    timeout = command.get("timeout")
    result: dict[str, Any] = {"exec_id": exec_id}
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        result["error"] = "exec needs a command: a non-empty list of strings"
    elif task_id not in runtime.running():
        result["error"] = f"container {task_id} is not running on this worker"
    else:
        try:
            done = await runtime.exec(task_id, argv, timeout=float(timeout or DEFAULT_EXEC_TIMEOUT))
        except FileNotFoundError as exc:
            result["error"] = f"{argv[0]}: command not found ({exc.strerror or exc})"
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        else:
            output = done.output
            if len(output) > MAX_EXEC_OUTPUT:
                output = output[-MAX_EXEC_OUTPUT:]
                result["truncated"] = True
            result.update(exit_code=done.exit_code, output=output)
    try:
        await rpc.call("worker.exec_result", result)
    except RpcError as exc:
        log.warning("could not return the result of exec %s in %s: %s", exec_id, task_id, exc)
