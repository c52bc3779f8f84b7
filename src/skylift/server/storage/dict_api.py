"""The `dict.*` methods: a durable key-value map per Dict.

Keys and values arrive pickled by the SDK; the control plane never unpickles them and compares
keys as bytes (the SDK pickles keys deterministically). Every write is committed to SQLite before
the answer, so entries survive a restart.

    dict.put {dict_id, items: [[key, value]], skip_if_exists?} -> {written}
    dict.get {dict_id, key} -> {found, value?}        dict.contains {dict_id, key} -> {found}
    dict.pop {dict_id, key} -> {found, value?}        dict.len {dict_id} -> {len}
    dict.clear {dict_id} -> {}
    dict.scan {dict_id, after: int, limit: int, values: bool} -> {items: [[key, value?]], next, done}
"""

from __future__ import annotations

import time
from typing import Any

from ..._protocol import api
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..params import Params, invalid
from .objects import Objects

MAX_UPDATE_ITEMS = 10_000
MAX_SCAN = 1000


class DictApi:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.store = objects.store

    def routes(self) -> Routes:
        return {
            "dict.put": self.put,
            "dict.get": self.get,
            "dict.contains": self.contains,
            "dict.pop": self.pop,
            "dict.len": self.length,
            "dict.clear": self.clear,
            "dict.scan": self.scan,
        }

    async def _dict(self, p: Params) -> str:
        record = await self.objects.resolve(p.method, p.text("dict_id"), "dict")
        return record.object_id

    @staticmethod
    def _key(p: Params) -> bytes:
        return p.blob("key")

    async def put(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("dict.put", raw)
        dict_id = await self._dict(p)
        items = p.items("items")
        if len(items) > MAX_UPDATE_ITEMS:
            raise invalid("dict.put", f"at most {MAX_UPDATE_ITEMS} entries per update, got {len(items)}; "
                                      "split the update")
        rows: list[tuple[bytes, bytes]] = []
        for item in items:
            if (not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], bytes)
                    or not isinstance(item[1], bytes)):
                raise invalid("dict.put", "items must be [key bytes, value bytes] pairs")
            if len(item[1]) > api.MAX_PAYLOAD_BYTES:
                raise invalid("dict.put", f"a value is over {api.MAX_PAYLOAD_BYTES >> 20} MiB")
            rows.append((item[0], item[1]))
        written = await self.objects.run(self.store.dict_put, dict_id, rows, p.flag("skip_if_exists"), time.time())
        return {"written": written}

    async def get(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("dict.get", raw)
        dict_id = await self._dict(p)
        value = await self.objects.run(self.store.dict_get, dict_id, self._key(p))
        return {"found": False} if value is None else {"found": True, "value": value}

    async def contains(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("dict.contains", raw)
        dict_id = await self._dict(p)
        return {"found": self.store.dict_contains(dict_id, self._key(p))}

    async def pop(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("dict.pop", raw)
        dict_id = await self._dict(p)
        value = await self.objects.run(self.store.dict_pop, dict_id, self._key(p))
        return {"found": False} if value is None else {"found": True, "value": value}

    async def length(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("dict.len", raw)
        record = await self.objects.resolve(p.method, p.text("dict_id"), "dict")
        return {"len": await self.objects.run(self.store.count, record)}

    async def clear(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("dict.clear", raw)
        await self.objects.run(self.store.dict_clear, await self._dict(p))
        return {}

    async def scan(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("dict.scan", raw)
        dict_id = await self._dict(p)
        limit = min(p.integer("limit", 100, minimum=1), MAX_SCAN)
        rows = await self.objects.run(self.store.dict_scan, dict_id, p.integer("after", 0), limit,
                                      p.flag("values", True))
        items = [[key, value] for _, key, value in rows]
        return {"items": items, "next": rows[-1][0] if rows else p.integer("after", 0), "done": len(rows) < limit}
