"""Named objects (Secrets, Volumes, Dicts, Queues): names, environments, ephemeral lifetimes.

Every object has an id (`st-`, `vo-`, `di-`, `qu-`) and, unless it is anonymous, a name that is
unique per kind within an environment. Any app in the environment (and any of its containers)
reaches it by name. An ephemeral object (`Dict.ephemeral()`) belongs to the connection that made
it: it is deleted when that connection ends, and at the next start of the control plane (its
connection is gone by then).

    object.get        name → id, optionally creating it       (clients and containers)
    object.ephemeral  a fresh anonymous object for this connection
    object.list       named objects of a kind, with their sizes
    object.delete     an object and everything in it
    object.info       name, environment, creation time of an id
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..._protocol import ids
from ..._protocol.rpc import ErrorCode, RpcError
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..params import Params, invalid, not_found
from .object_store import KINDS, ObjectRecord, ObjectStore

if TYPE_CHECKING:
    from ..store import Database

log = logging.getLogger("skylift.server")

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

CLI_GROUP = {"secret": "secret", "volume": "volume", "dict": "dict", "queue": "queue"}
TITLE = {"secret": "Secret", "volume": "Volume", "dict": "Dict", "queue": "Queue"}


def check_name(method: str, kind: str, name: str) -> str:
    if not NAME_RE.match(name):
        raise invalid(method, f"{TITLE[kind]} name {name!r} is invalid: use 1 to 64 letters, digits, '.', '_' or '-'")
    return name


def missing_message(kind: str, name: str, environment: str) -> str:
    fix = (f"create it with `skylift secret create {name} KEY=VALUE ...`" if kind == "secret" else
           f"create it with `skylift {CLI_GROUP[kind]} create {name}` or pass create_if_missing=True")
    return f"{TITLE[kind]} {name!r} not found in environment {environment!r}; {fix}"


class Objects:
    def __init__(self, db: Database, store: ObjectStore) -> None:
        self.db = db
        self.store = store
        self._known: dict[str, ObjectRecord] = {}
        # kind -> called with the record before it is deleted (to drop caches, wake waiters)
        self.on_delete: dict[str, Callable[[ObjectRecord], None]] = {}
        # kind -> extra checks for object.get (a Secret's required_keys)
        self.on_get: dict[str, Callable[[ObjectRecord, Params], None]] = {}

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.db.run(fn, *args)

    def routes(self) -> Routes:
        return {
            "object.get": self.get,
            "object.ephemeral": self.ephemeral,
            "object.list": self.list_objects,
            "object.delete": self.delete,
            "object.info": self.info,
            "object.rename": self.rename,
        }

    def startup(self) -> None:
        """Ephemeral objects belonged to connections of the previous process: they are gone."""
        self.store.delete_ephemeral()

    async def resolve(self, method: str, object_id: str, kind: str) -> ObjectRecord:
        record = self._known.get(object_id)
        if record is None:
            record = await self.run(self.store.get_object, object_id)
            if record is None or record.kind != kind:
                raise not_found(f"{method}: no {TITLE[kind]} with id {object_id!r} (it was deleted, or never existed); "
                                f"look it up by name again")
            self._known[object_id] = record
        return record

    async def create(self, kind: str, name: str | None, environment: str, *, ephemeral: bool = False,
                     fingerprint: str | None = None) -> ObjectRecord:
        record = ObjectRecord(ids.new_id(kind), kind, name, environment, time.time(), ephemeral)
        await self.run(self.store.insert_object, record, fingerprint)
        self._known[record.object_id] = record
        return record

    def _kind(self, p: Params) -> str:
        return p.choice("kind", KINDS)

    async def get(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("object.get", raw)
        kind = self._kind(p)
        name = check_name("object.get", kind, p.text("name"))
        environment = p.environment()
        record = await self.run(self.store.find_object, kind, environment, name)
        created = False
        if record is None:
            if not p.flag("create_if_missing") or kind == "secret":
                raise not_found(missing_message(kind, name, environment))
            try:
                record = await self.create(kind, name, environment)
                created = True
            except Exception:  # created concurrently under the same name: use that one
                record = await self.run(self.store.find_object, kind, environment, name)
                if record is None:
                    raise
        check = self.on_get.get(kind)
        if check is not None:
            check(record, p)
        self._known[record.object_id] = record
        return {"object_id": record.object_id, "created": created}

    async def info(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("object.info", raw)
        record = await self.resolve("object.info", p.text("object_id"), self._kind(p))
        return {"object_id": record.object_id, "name": record.name, "environment": record.environment,
                "created_at": record.created_at, "ephemeral": record.ephemeral}

    async def ephemeral(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("object.ephemeral", raw)
        kind = self._kind(p)
        if kind == "secret":
            raise invalid("object.ephemeral", "anonymous secrets are made with secret.create (no name)")
        record = await self.create(kind, None, p.environment(), ephemeral=True)
        owned: set[str] = session.info.setdefault("ephemeral_objects", set())
        owned.add(record.object_id)
        return {"object_id": record.object_id}

    async def list_objects(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("object.list", raw)
        kind = self._kind(p)

        def listing() -> list[dict[str, Any]]:
            return [{"object_id": r.object_id, "name": r.name, "created_at": r.created_at, "size": self.store.count(r)}
                    for r in self.store.list_objects(kind, p.environment())]

        return {"objects": await self.run(listing)}

    async def delete(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("object.delete", raw)
        kind = self._kind(p)
        object_id = p.opt_text("object_id")
        environment = p.environment()
        if object_id:
            record = await self.resolve("object.delete", object_id, kind)
        else:
            name = check_name("object.delete", kind, p.text("name"))
            found = await self.run(self.store.find_object, kind, environment, name)
            if found is None:
                if p.flag("allow_missing"):
                    return {}
                raise RpcError(ErrorCode.NOT_FOUND, missing_message(kind, name, environment))
            record = found
        await self.drop(record)
        owned = session.info.get("ephemeral_objects")
        if owned is not None:
            owned.discard(record.object_id)
        return {}

    async def rename(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        """`Volume.rename` / `skylift volume rename`: the same object (id, contents) under a new name."""
        p = Params("object.rename", raw)
        kind = self._kind(p)
        environment = p.environment()
        name = check_name("object.rename", kind, p.text("name"))
        new_name = check_name("object.rename", kind, p.text("new_name"))
        record = await self.run(self.store.find_object, kind, environment, name)
        if record is None:
            raise RpcError(ErrorCode.NOT_FOUND, missing_message(kind, name, environment))
        if await self.run(self.store.find_object, kind, environment, new_name) is not None:
            raise RpcError(ErrorCode.CONFLICT, f"{TITLE[kind]} {new_name!r} already exists in environment "
                                               f"{environment!r}; delete it or choose another name")
        await self.run(self.store.rename_object, record.object_id, new_name)
        self._known.pop(record.object_id, None)
        return {"object_id": record.object_id}

    async def drop(self, record: ObjectRecord) -> None:
        hook = self.on_delete.get(record.kind)
        if hook is not None:
            hook(record)
        self._known.pop(record.object_id, None)
        await self.run(self.store.delete_object, record.object_id)

    async def on_disconnect(self, session: Session) -> None:
        for object_id in list(session.info.get("ephemeral_objects", ())):
            try:
                record = self._known.get(object_id) or await self.run(self.store.get_object, object_id)
                if record is not None:
                    await self.drop(record)
            except Exception:  # shutting down: the next start deletes it
                log.warning("could not delete ephemeral object %s now; it goes at the next start", object_id)
