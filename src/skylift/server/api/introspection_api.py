"""`app.info`, `function.info` and `secret.update`: what Modal's `App.info()`, `Function.from_id`,
`Function.info()` and `Secret.update` read or change (docs/modal-compatibility.md).

    app.info {app_id} -> {app_id, name, description, state, environment, created_at, stopped_at,
                          version, deployed_at (the latest version's, or None), function_ids: {tag: fu-id}}
    function.info {function_id} -> {function_id, app_id, app_name, tag, definition, web_urls?}
    secret.update {secret_id, values: {KEY: str}} -> {object_id}     merges into a named secret

A stopped app is answered from the store (its functions are gone: `function_ids` is empty).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..params import Params, invalid

if TYPE_CHECKING:
    from ..control_plane import ControlPlane


class IntrospectionApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def routes(self) -> Routes:
        return {"app.info": self.app_info, "function.info": self.function_info, "secret.update": self.secret_update}

    async def app_info(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.info", raw)
        app = await self.cp.catalog.app(p.text("app_id"))
        tags = dict(app.function_ids) or {f.tag: f.function_id for f in self.cp.catalog.functions_of(app.app_id)}
        versions = await self.cp.db.run(self.cp.db.store.list_versions, app.app_id) if app.version else []
        return {"app_id": app.app_id, "name": app.name, "description": app.description or app.name or "",
                "state": app.state.value, "environment": app.environment, "created_at": app.created_at,
                "stopped_at": app.stopped_at, "version": app.version,
                "deployed_at": versions[-1].deployed_at if versions else None,
                "function_ids": tags if app.running else {}}

    async def function_info(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("function.info", raw)
        function = await self.cp.catalog.function(p.text("function_id"))
        urls = self.cp.gateway.web_urls_for(function.app, function.tag, function.definition)
        return {"function_id": function.function_id, "app_id": function.app.app_id, "app_name": function.app.name,
                "tag": function.tag, "definition": function.definition, **({"web_urls": urls} if urls else {})}

    async def secret_update(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("secret.update", raw)
        secrets = self.cp.storage.secrets
        values = secrets.values_param("secret.update", raw)
        record = await secrets.objects.resolve("secret.update", p.text("secret_id"), "secret")
        if record.name is None:
            raise invalid("secret.update", f"secret {record.object_id} is anonymous (Secret.from_dict); only "
                                           "named secrets can be updated. Create a new one with the values instead")
        await secrets.merge(record, values)
        return {"object_id": record.object_id}
