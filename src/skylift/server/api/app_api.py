"""The `app.*` and `function.*` methods: creating, deploying, finding and stopping apps.

Deploys follow Modal (§3.8): `app.deploy_begin` gets or creates the deployed app by name,
`function.create` reuses the id of the function with the same tag (so `Function.from_name`
handles stay valid) and stages the new definition, and `app.publish` makes it live as a new
version: staged definitions replace the old ones and the old containers drain, so new inputs
run the new code. A deploy that fails before `app.publish` leaves the old version serving.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..._protocol import api, ids
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..execution.catalog import (
    APP_TRANSITIONS,
    AUTOSCALER_FIELDS,
    AppEntry,
    AppState,
    FunctionEntry,
    validate_definition,
)
from ..http.web_routes import check_labels
from ..params import Params, invalid, not_found

if TYPE_CHECKING:
    from ..control_plane import ControlPlane


class AppApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._staged: dict[str, dict[str, Any]] = {}  # function id -> definition awaiting app.publish

    def routes(self) -> Routes:
        return {
            "app.create": self.create,
            "app.deploy_begin": self.deploy_begin,
            "app.publish": self.publish,
            "app.heartbeat": self.heartbeat,
            "app.disconnect": self.disconnect,
            "app.stop": self.stop,
            "app.list": self.list,
            "app.history": self.history,
            "app.lookup": self.lookup,
            "function.create": self.function_create,
            "function.get": self.function_get,
            "function.stats": self.function_stats,
            "function.update_autoscaler": self.update_autoscaler,
        }

    # ---- apps ---------------------------------------------------------------------------------

    async def _new_app(self, name: str | None, environment: str, state: AppState, description: str | None, *,
                       session: Session, strict_containers: bool) -> AppEntry:
        # An app a container creates is its own to run and stop (server/access.py).
        owner = session.identity if session.role == api.ROLE_CONTAINER else ""
        app = AppEntry(ids.new_id("app"), name, environment, state, time.time(), description=description,
                       last_heartbeat=self.cp.clock.now(), strict_containers=strict_containers, owner_task=owner)
        self.cp.catalog.apps[app.app_id] = app  # before the await: a concurrent deploy of the name finds it
        try:
            await self.cp.db.run(self.cp.db.store.insert_app, app.record())
        except BaseException:
            self.cp.catalog.apps.pop(app.app_id, None)
            raise
        return app

    async def create(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.create", raw)
        state = AppState(p.choice("state", ("ephemeral", "detached"), "ephemeral"))
        app = await self._new_app(p.opt_text("name"), p.environment(), state, p.opt_text("description"),
                                  session=session, strict_containers=p.flag("strict_containers"))
        return {"app_id": app.app_id}

    async def deploy_begin(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.deploy_begin", raw)
        name = p.text("name")
        if not name:
            raise invalid("app.deploy_begin", "a deployed app needs a name")
        environment = p.environment()
        # A deploy sends the mode; App.lookup(create_if_missing=True) doesn't, and leaves it as it is.
        strict = p.flag("strict_containers") if "strict_containers" in raw else None
        app = self.cp.catalog.find_deployed(name, environment)
        if app is None:
            app = await self._new_app(name, environment, AppState.DEPLOYED, None, session=session,
                                      strict_containers=bool(strict))
        elif (strict is not None and strict != app.strict_containers
              and (session.role == api.ROLE_CLIENT or app.owner_task == session.identity)):
            # Containers started from now on get the new mode (the old ones drain at app.publish).
            app.strict_containers = strict
            await self.cp.db.run(self.cp.db.store.set_app_strict, app.app_id, strict)
        return {"app_id": app.app_id}

    async def _running_app(self, method: str, app_id: str) -> AppEntry:
        app = await self.cp.catalog.app(app_id)
        if not app.running:
            raise invalid(method, f"{app.label} ({app_id}) is stopped; start a new run or deploy")
        return app

    async def publish(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.publish", raw)
        app = await self._running_app("app.publish", p.text("app_id"))
        state = AppState(p.choice("state", ("ephemeral", "detached", "deployed")))
        function_ids = p.mapping("function_ids", {})
        for tag, fid in function_ids.items():
            function = self.cp.catalog.functions.get(fid) if isinstance(fid, str) else None
            if function is None or function.app is not app or function.tag != tag:
                raise invalid("app.publish", f"function_ids[{tag!r}] = {fid!r} is not a function of this app "
                                             f"with that tag; create it with function.create first")
        if (state is AppState.DEPLOYED) != (app.state is AppState.DEPLOYED):
            raise invalid("app.publish", f"{app.label} is {app.state.value}; only apps from app.deploy_begin "
                                         "are published as deployed")
        if state is not app.state:
            if state not in APP_TRANSITIONS[app.state]:
                raise invalid("app.publish", f"{app.label} can't go from {app.state.value} to {state.value}")
            app.state = state
            await self.cp.db.run(self.cp.db.store.set_app_state, app.app_id, state.value, None)
        version = 0
        if state is AppState.DEPLOYED:
            version = await self.cp.db.run(self.cp.db.store.add_version, app.app_id, time.time(),
                                           p.opt_text("tag"), p.opt_text("commit_info"), dict(function_ids))
        removed = set(app.function_ids.values()) - set(function_ids.values())
        for fid in function_ids.values():
            staged = self._staged.pop(fid, None)
            if staged is not None:
                await self._apply(self.cp.catalog.functions[fid], staged)
            elif state is AppState.DEPLOYED and self.cp.catalog.functions[fid].override:
                # Every deploy resets update_autoscaler overrides (Modal), unchanged functions too.
                self.cp.catalog.functions[fid].override = {}
                await self.cp.db.run(self.cp.db.store.set_autoscaler_override, fid, {})
            self.cp.scaler.ensure_warm(self.cp.catalog.functions[fid])
        app.function_ids = dict(function_ids)
        app.version = version or app.version
        for fid in removed:
            self._retire(self.cp.catalog.functions.get(fid), f"it was removed from {app.label} by a redeploy")
        self.cp.scaler.wake()
        return {"version": version, "app_id": app.app_id}

    async def _apply(self, function: FunctionEntry, definition: dict[str, Any]) -> None:
        """Make a new definition live; old containers drain so new inputs get the new code."""
        function.definition = definition
        function.override = {}  # update_autoscaler overrides reset on deploy (Modal)
        function.refresh()
        await self.cp.db.run(self.cp.db.store.set_function_definition, function.function_id, definition)
        for pool in self.cp.pools.of_function(function.function_id):
            for task in list(pool.tasks.values()):
                if task.definition is not definition:  # one started meanwhile already runs the new code
                    self.cp.dispatcher.stop_task(task, "redeployed")

    def _retire(self, function: FunctionEntry | None, reason: str) -> None:
        if function is None:
            return
        for pool in self.cp.pools.of_function(function.function_id):
            for task in list(pool.tasks.values()):
                self.cp.dispatcher.stop_task(task, reason)
        for call in list(self.cp.calls.calls.values()):
            if call.function is function and not call.finished:
                self.cp.dispatcher.cancel(call, message=f"{function.tag!r} can't run: {reason}")

    async def heartbeat(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.heartbeat", raw)
        app = await self.cp.catalog.app(p.text("app_id"))
        app.last_heartbeat = self.cp.clock.now()
        return {}

    async def disconnect(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.disconnect", raw)
        app = await self.cp.catalog.app(p.text("app_id"))
        if app.state is AppState.EPHEMERAL:
            reason = p.opt_text("reason")
            await self.stop_app(app, f"its client disconnected ({reason})" if reason else "its client disconnected")
        return {}

    async def stop(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.stop", raw)
        app_id = p.opt_text("app_id")
        if app_id:
            app = await self.cp.catalog.app(app_id)
        else:
            name = p.opt_text("name")
            if not name:
                raise invalid("app.stop", "give 'app_id' or 'name'")
            environment = p.environment()
            found = self.cp.catalog.find_running(name, environment)
            if found is None:
                raise not_found(f"no running app named {name!r} in environment {environment!r}")
            app = found
        await self.stop_app(app, "stopped")
        return {"app_id": app.app_id}

    async def stop_app(self, app: AppEntry, reason: str) -> None:
        """Stop an app for good: its calls fail, its containers go, and its functions can't be called."""
        if not app.running:
            return
        app.state = AppState.STOPPED
        app.stopped_at = time.time()
        await self.cp.db.run(self.cp.db.store.set_app_state, app.app_id, app.state.value, app.stopped_at)
        message = f"{app.label} was stopped" + ("" if reason == "stopped" else f": {reason}")
        self.cp.logs.system(app.app_id, "", "", message)
        for call in list(self.cp.calls.calls.values()):
            if call.function.app is app and not call.finished:
                self.cp.dispatcher.cancel(call, message=message)
        for task in self.cp.tasks.of_app(app.app_id):
            self.cp.dispatcher.stop_task(task, "app stopped")
        for fid in [f.function_id for f in self.cp.catalog.functions_of(app.app_id)]:
            self._staged.pop(fid, None)
            del self.cp.catalog.functions[fid]
        self.cp.catalog.apps.pop(app.app_id, None)
        self.cp.logs.wake(app.app_id)
        self.cp.scaler.wake()

    async def list(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.list", raw)
        records = await self.cp.db.run(self.cp.db.store.list_apps, p.environment())
        counts: dict[str, int] = {}
        for task in self.cp.tasks.all():
            if task.alive:
                app_id = task.pool.function.app.app_id
                counts[app_id] = counts.get(app_id, 0) + 1
        apps = []
        for rec in records:
            live = self.cp.catalog.apps.get(rec.app_id)
            apps.append({"app_id": rec.app_id, "name": rec.name, "state": live.state.value if live else rec.state,
                         "environment": rec.environment, "created_at": rec.created_at,
                         "stopped_at": live.stopped_at if live else rec.stopped_at,
                         "version": live.version if live else 0, "n_containers": counts.get(rec.app_id, 0),
                         "description": rec.description})
        return {"apps": apps}

    async def history(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.history", raw)
        name = p.text("name")
        environment = p.environment()
        app = self.cp.catalog.find_deployed(name, environment)
        if app is None:
            raise not_found(f"no deployed app named {name!r} in environment {environment!r}")
        versions = await self.cp.db.run(self.cp.db.store.list_versions, app.app_id)
        return {"versions": [{"version": v.version, "deployed_at": v.deployed_at, "tag": v.tag,
                              "commit_info": v.commit_info, "function_tags": sorted(v.function_ids)}
                             for v in versions]}

    def _find(self, name: str, environment: str) -> AppEntry:
        app = self.cp.catalog.find_running(name, environment)
        if app is None or (app.state is AppState.DEPLOYED and app.version == 0):
            raise not_found(f"app {name!r} not found in environment {environment!r}; deploy it first "
                            "(`skylift deploy`)")
        return app

    def _tags(self, app: AppEntry) -> dict[str, str]:
        return dict(app.function_ids) or {f.tag: f.function_id for f in self.cp.catalog.functions_of(app.app_id)}

    async def lookup(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.lookup", raw)
        app = self._find(p.text("name"), p.environment())
        return {"app_id": app.app_id, "state": app.state.value, "function_tags": sorted(self._tags(app))}

    # ---- functions ----------------------------------------------------------------------------

    async def function_create(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("function.create", raw)
        app = await self._running_app("function.create", p.text("app_id"))
        definition = validate_definition("function.create", raw.get("definition"))
        tag = definition["tag"]
        check_labels(self.cp.catalog, app, definition, "function.create")
        existing = next((f for f in self.cp.catalog.functions_of(app.app_id) if f.tag == tag), None)
        if existing is not None:
            if definition != existing.definition:
                if app.function_ids:  # live: the new code takes over at app.publish
                    self._staged[existing.function_id] = definition
                else:
                    await self._apply(existing, definition)
            return {"function_id": existing.function_id, **self._web_urls(existing, definition)}
        function = FunctionEntry(ids.new_id("function"), app, tag, definition, time.time())
        self.cp.catalog.functions[function.function_id] = function  # (before the await, as in _new_app)
        try:
            await self.cp.db.run(self.cp.db.store.insert_function, function.record())
        except BaseException:
            self.cp.catalog.functions.pop(function.function_id, None)
            raise
        return {"function_id": function.function_id, **self._web_urls(function, definition)}

    def _web_urls(self, function: FunctionEntry, definition: dict[str, Any]) -> dict[str, Any]:
        """`web_urls` for an answer: the gateway URL of each web endpoint of `definition`."""
        urls = self.cp.gateway.web_urls_for(function.app, function.tag, definition)
        return {"web_urls": urls} if urls else {}

    async def function_get(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("function.get", raw)
        app_name = p.text("app_name")
        tag = p.text("tag")
        app = self._find(app_name, p.environment())
        version = p.opt_integer("version", minimum=1)
        tags = self._tags(app)
        if version is not None:
            versions = await self.cp.db.run(self.cp.db.store.list_versions, app.app_id)
            chosen = next((v for v in versions if v.version == version), None)
            if chosen is None:
                raise not_found(f"app {app_name!r} has no version {version}; it has "
                                f"{', '.join(str(v.version) for v in versions) or 'none'}")
            tags = chosen.function_ids
        fid = tags.get(tag)
        if fid is None:
            known = ", ".join(sorted(tags)) or "none"
            raise not_found(f"app {app_name!r} has no function {tag!r}; its functions are: {known}")
        function = await self.cp.catalog.function(fid)
        return {"function_id": function.function_id, "definition": function.definition,
                **self._web_urls(function, function.definition)}

    async def function_stats(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("function.stats", raw)
        function = await self.cp.catalog.function(p.text("function_id"))
        pools = self.cp.pools.of_function(function.function_id)
        backlog = sum(pool.n_pending for pool in pools)
        runners = sum(1 for pool in pools for t in pool.tasks.values() if t.alive and not t.stop_requested)
        running = sum(pool.n_running for pool in pools)
        return {"backlog": backlog, "num_total_runners": runners, "num_running_inputs": running,
                "input_headroom": max(0, runners * function.slots - running)}

    async def update_autoscaler(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("function.update_autoscaler", raw)
        function = await self.cp.catalog.function(p.text("function_id"))
        changes: dict[str, Any] = {}
        for name in AUTOSCALER_FIELDS:
            value = p.opt_integer(name, minimum=0)
            if value is not None:
                changes[name] = value
        function.override.update(changes)
        await self.cp.db.run(self.cp.db.store.set_autoscaler_override, function.function_id, function.override)
        self.cp.scaler.ensure_warm(function)
        self.cp.scaler.wake()
        return {"autoscaler": function.autoscaler()}
