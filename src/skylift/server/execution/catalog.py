"""Apps and functions as the control plane holds them in memory, backed by the store.

Running apps and their functions are loaded at startup and looked up by dict on the hot path;
anything else (a stopped app, a function id from an old handle) is read from the store on demand.
A `FunctionEntry` derives, once per definition, everything the scheduler reads on every call:
timeout, retry policy, autoscaler policy, concurrency slots and the placement request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from ..._protocol import api
from ..params import invalid, not_found
from ..policy import placement
from ..policy.autoscaler import Policy
from ..policy.retries import RetryPolicy
from ..store import AppRecord, Database, FunctionRecord


class AppState(enum.Enum):
    EPHEMERAL = "ephemeral"
    DETACHED = "detached"
    DEPLOYED = "deployed"
    STOPPED = "stopped"


APP_TRANSITIONS: dict[AppState, frozenset[AppState]] = {
    AppState.EPHEMERAL: frozenset({AppState.DETACHED, AppState.STOPPED}),
    AppState.DETACHED: frozenset({AppState.EPHEMERAL, AppState.STOPPED}),
    AppState.DEPLOYED: frozenset({AppState.STOPPED}),
    AppState.STOPPED: frozenset(),
}


@dataclass(eq=False)
class AppEntry:
    app_id: str
    name: str | None
    environment: str
    state: AppState
    created_at: float
    stopped_at: float | None = None
    description: str | None = None
    last_heartbeat: float = 0.0
    function_ids: dict[str, str] = field(default_factory=dict)  # as last published
    version: int = 0
    # Its containers reach only their own app (docs/security.md); stored with the app.
    strict_containers: bool = False
    owner_task: str = ""  # the container task whose session created it ("" for clients): it may run it

    @property
    def running(self) -> bool:
        return self.state is not AppState.STOPPED

    @property
    def label(self) -> str:
        return f"app {self.name!r}" if self.name else f"app {self.app_id}"

    def record(self) -> AppRecord:
        return AppRecord(self.app_id, self.name, self.environment, self.state.value, self.created_at,
                         self.stopped_at, self.description, self.strict_containers, self.owner_task)


AUTOSCALER_FIELDS = ("min_containers", "max_containers", "buffer_containers", "scaledown_window")


def validate_definition(method: str, definition: Any) -> dict[str, Any]:
    """Check the fields the control plane reads; the rest travels to the container untouched."""
    if not isinstance(definition, dict):
        raise invalid(method, "field 'definition' must be a map (a FunctionDefinition)")
    tag = definition.get("tag")
    if not isinstance(tag, str) or not tag:
        raise invalid(method, "definition field 'tag' must be a non-empty string")
    where = f"definition of {tag!r}"
    for name, kind in (("image_id", str), ("timeout", int), ("retries", dict), ("autoscaler", dict),
                       ("concurrency", dict), ("resources", dict), ("env", dict), ("mounts", list),
                       ("methods", dict)):
        value = definition.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise invalid(method, f"{where}: field {name!r} must be a {kind.__name__}")
    timeout = definition.get("timeout")
    if timeout is not None and timeout < 1:
        raise invalid(method, f"{where}: timeout must be at least 1 second, got {timeout}")
    autoscaler = definition.get("autoscaler") or {}
    for name in AUTOSCALER_FIELDS:
        value = autoscaler.get(name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise invalid(method, f"{where}: autoscaler field {name!r} must be a non-negative number")
    try:
        placement.parse_gpu((definition.get("resources") or {}).get("gpu"))
    except ValueError as exc:
        raise invalid(method, f"{where}: {exc}") from None
    for key, value in (definition.get("env") or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise invalid(method, f"{where}: env must map strings to strings")
    return definition


def placement_labels(raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Worker labels a function's `scheduler_placement` requires: regions, zone and instance types."""
    spec = (raw or {}).get("scheduler_placement") if isinstance(raw, dict) else None
    if not isinstance(spec, dict):
        return ()
    out = []
    for key, field_name in (("region", "regions"), ("zone", "zones"), ("instance_type", "instance_types")):
        values = spec.get(field_name) or []
        if isinstance(values, list) and values:
            out.append((key, tuple(str(v) for v in values)))
    return tuple(out)


@dataclass(eq=False)
class FunctionEntry:
    function_id: str
    app: AppEntry
    tag: str
    definition: dict[str, Any]
    created_at: float
    override: dict[str, Any] = field(default_factory=dict)
    # Derived from the definition by `refresh` (read on every call, computed once).
    timeout: float = float(api.DEFAULT_TIMEOUT)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    slots: int = 1
    single_use: bool = False
    request: placement.Request = field(default_factory=placement.Request)
    image_id: str = ""
    is_generator: bool = False

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        d = self.definition
        self.timeout = float(d.get("timeout") or api.DEFAULT_TIMEOUT)
        self.retry = RetryPolicy.from_definition(d.get("retries"))
        self.single_use = bool(d.get("single_use_containers"))
        concurrency = d.get("concurrency") or {}
        slots = concurrency.get("target_inputs") or concurrency.get("max_inputs") or 1
        self.slots = 1 if self.single_use else max(1, int(slots))
        resources = d.get("resources") or {}
        self.request = placement.Request(
            cpu=float(resources.get("cpu") or placement.DEFAULT_CPU),
            memory_mb=int(resources.get("memory") or placement.DEFAULT_MEMORY_MB),
            gpus=placement.parse_gpu(resources.get("gpu")),
            labels=placement_labels(d.get("placement")),
        )
        self.image_id = str(d.get("image_id") or "")
        self.is_generator = bool(d.get("is_generator"))

    def autoscaler(self) -> dict[str, Any]:
        """The effective AutoscalerSettings: the definition's, with update_autoscaler on top."""
        base = self.definition.get("autoscaler") or {}
        merged: dict[str, Any] = {
            "min_containers": int(base.get("min_containers") or 0),
            "max_containers": base.get("max_containers"),
            "buffer_containers": int(base.get("buffer_containers") or 0),
            "scaledown_window": base.get("scaledown_window") or api.DEFAULT_SCALEDOWN_WINDOW,
        }
        merged.update({k: v for k, v in self.override.items() if k in AUTOSCALER_FIELDS})
        return merged

    def policy(self) -> Policy:
        a = self.autoscaler()
        return Policy(min_containers=int(a["min_containers"]),
                      max_containers=None if a["max_containers"] is None else int(a["max_containers"]),
                      buffer_containers=int(a["buffer_containers"]),
                      scaledown_window=float(a["scaledown_window"]), slots=self.slots,
                      single_use=self.single_use)

    def record(self) -> FunctionRecord:
        return FunctionRecord(self.function_id, self.app.app_id, self.tag, self.definition, self.created_at,
                              self.override)


class Catalog:
    def __init__(self, db: Database) -> None:
        self._db = db
        self.apps: dict[str, AppEntry] = {}
        self.functions: dict[str, FunctionEntry] = {}

    def load(self, now: float) -> None:
        """Read running apps and their functions (at startup, before serving)."""
        store = self._db.store
        for rec in store.list_apps(None):
            if rec.state == AppState.STOPPED.value:
                continue
            app = self._app_from_record(rec)
            app.last_heartbeat = now  # its client gets a full heartbeat period to come back
            self.apps[app.app_id] = app
            versions = store.list_versions(app.app_id)
            if versions:
                app.version = versions[-1].version
                app.function_ids = dict(versions[-1].function_ids)
            for frec in store.list_functions(app.app_id):
                self.functions[frec.function_id] = self._function_from_record(frec, app)

    @staticmethod
    def _app_from_record(rec: AppRecord) -> AppEntry:
        return AppEntry(rec.app_id, rec.name, rec.environment, AppState(rec.state), rec.created_at,
                        rec.stopped_at, rec.description, strict_containers=bool(rec.strict_containers),
                        owner_task=rec.owner_task or "")

    @staticmethod
    def _function_from_record(rec: FunctionRecord, app: AppEntry) -> FunctionEntry:
        return FunctionEntry(rec.function_id, app, rec.tag, rec.definition, rec.created_at,
                             dict(rec.autoscaler_override or {}))

    async def app(self, app_id: str) -> AppEntry:
        app = self.apps.get(app_id)
        if app is not None:
            return app
        rec = await self._db.run(self._db.store.get_app, app_id)
        if rec is None:
            raise not_found(f"no app with id {app_id!r}")
        app = self._app_from_record(rec)
        if app.running:  # should have been loaded; keep it from now on
            self.apps[app_id] = app
        return app

    async def function(self, function_id: str) -> FunctionEntry:
        entry = self.functions.get(function_id)
        if entry is not None:
            return entry
        rec = await self._db.run(self._db.store.get_function, function_id)
        if rec is None:
            raise not_found(f"no function with id {function_id!r}; look it up again with Function.from_name")
        app = await self.app(rec.app_id)
        entry = self.functions.get(function_id)  # loaded meanwhile
        if entry is None:
            entry = self._function_from_record(rec, app)
            if app.running:
                self.functions[function_id] = entry
        return entry

    def functions_of(self, app_id: str) -> list[FunctionEntry]:
        return [f for f in self.functions.values() if f.app.app_id == app_id]

    def find_running(self, name: str, environment: str) -> AppEntry | None:
        """The running app by that name, a deployed one first, else the newest."""
        found = [a for a in self.apps.values() if a.running and a.name == name and a.environment == environment]
        if not found:
            return None
        found.sort(key=lambda a: (a.state is AppState.DEPLOYED, a.created_at))
        return found[-1]

    def find_deployed(self, name: str, environment: str) -> AppEntry | None:
        for app in self.apps.values():
            if app.state is AppState.DEPLOYED and app.name == name and app.environment == environment:
                return app
        return None
