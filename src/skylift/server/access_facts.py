"""`PlatformFacts`: the `access.Lookup` view of a running control plane (in-memory reads only).

Kept apart from the rules so that they see only what they decide with, never the control plane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .access import AppFacts, InputFacts, SandboxFacts, TaskFacts
from .execution.catalog import AppEntry, AppState

if TYPE_CHECKING:
    from .control_plane import ControlPlane


class PlatformFacts:
    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp

    def task(self, task_id: str) -> TaskFacts | None:
        task = self._cp.tasks.get(task_id)
        if task is None:
            return None
        definition = task.definition
        secrets = definition.get("secret_ids") or []
        volumes = definition.get("volume_ids") or {}
        return TaskFacts(task.worker_id, task.pool.function.app.app_id, task.pool.key,
                         frozenset(s for s in secrets if isinstance(s, str)),
                         frozenset(v for v in volumes.values() if isinstance(v, str))
                         if isinstance(volumes, dict) else frozenset())

    def input(self, input_id: str) -> InputFacts | None:
        inp = self._cp.calls.inputs.get(input_id)
        if inp is not None:
            return InputFacts(inp.call.pool.key, tuple(inp.held_by))
        # A web request whose input already has its output may still be streaming its answer.
        exchange = self._cp.gateway.exchanges.get(input_id)
        if exchange is not None and exchange.call is not None:
            return InputFacts(exchange.call.pool.key, (exchange.sender,) if exchange.sender else ())
        return None

    def app(self, app_id: str) -> AppFacts | None:
        app = self._cp.catalog.apps.get(app_id)
        return _facts(app) if app is not None else None

    def running_app(self, name: str, environment: str) -> AppFacts | None:
        app = self._cp.catalog.find_running(name, environment)
        return _facts(app) if app is not None else None

    def function_app(self, function_id: str) -> str | None:
        function = self._cp.catalog.functions.get(function_id)
        return function.app.app_id if function is not None else None

    def call_app(self, call_id: str) -> str | None:
        call = self._cp.calls.get(call_id)
        return call.function.app.app_id if call is not None else None

    def exec_worker(self, exec_id: str) -> str | None:
        return self._cp.task_api.exec_workers.get(exec_id)

    def image_builder(self, image_id: str) -> str | None:
        return self._cp.images.builder(image_id)

    def sandbox(self, sandbox_id: str) -> SandboxFacts | None:
        sandbox = self._cp.sandbox_api.sandboxes.get(sandbox_id)
        if sandbox is None:
            return None
        task_id = sandbox.task.task_id if sandbox.task is not None and sandbox.alive else ""
        return SandboxFacts(sandbox.app_id, task_id)


def _facts(app: AppEntry) -> AppFacts:
    return AppFacts(app.app_id, app.name, app.environment, app.owner_task, app.state is AppState.DEPLOYED)
