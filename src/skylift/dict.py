"""`modal.Dict`: a durable key-value store shared by every app in an environment.

Example:
    >>> import skylift as modal
    >>> d = modal.Dict.from_name("my-dict", create_if_missing=True)   # doctest: +SKIP
    >>> d["key"] = {"any": "picklable value"}                          # doctest: +SKIP
    >>> d.put("lock", "me", skip_if_exists=True)                       # doctest: +SKIP
    True

Keys and values are pickled here; the control plane compares keys as the bytes of their pickle,
so use keys that pickle the same way every time (str, int, bytes, tuples of them). Unlike
Modal's, entries don't expire. Every write is on disk before it returns.
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from ._aio import blocking, iterating
from ._object import ObjectManager, _Object
from ._serialization import PICKLE_PROTOCOL, deserialize, serialize
from .exception import SerializationError

_MISSING: Any = object()
MAX_UPDATE_ITEMS = 10_000
SCAN_PAGE = 500


def encode_key(key: Any) -> bytes:
    """A key's identity: the bytes of its (plain, deterministic) pickle."""
    try:
        return pickle.dumps(key, protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        raise SerializationError(f"the Dict key {key!r} can't be pickled ({exc}); use str, int, bytes or tuples "
                                 "of them as keys") from exc


class Dict(_Object):
    """A distributed dictionary (Modal's `modal.Dict`)."""

    _kind: ClassVar[str] = "dict"
    _title: ClassVar[str] = "Dict"
    objects: ClassVar[ObjectManager]

    @classmethod
    def from_id(cls, dict_id: str, client: Any = None) -> Dict:  # type: ignore[override]
        """A handle to a Dict by its id (e.g. one passed along from another program)."""
        return cls._from_id(dict_id)

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None, create_if_missing: bool = False,
                  client: Any = None) -> Dict:
        """A handle to the named Dict (looked up on first use)."""
        return cls._by_name(name, environment_name, create_if_missing)

    @blocking
    async def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Set `key`; with `skip_if_exists`, only if it is absent. Returns whether it was written."""
        data = serialize(value, what=f"Dict value for {key!r}")
        got = await self._call("dict.put", {"items": [[encode_key(key), data]], "skip_if_exists": skip_if_exists})
        return bool(got["written"])

    @blocking
    async def get(self, key: Any, default: Any = None) -> Any:
        """The value of `key`, or `default`."""
        got = await self._call("dict.get", {"key": encode_key(key)})
        if not got["found"]:
            return default
        return deserialize(got["value"], what=f"Dict value for {key!r}")

    @blocking
    async def contains(self, key: Any) -> bool:
        got = await self._call("dict.contains", {"key": encode_key(key)})
        return bool(got["found"])

    @blocking
    async def len(self) -> int:
        """How many entries the Dict holds."""
        got = await self._call("dict.len", {})
        return int(got["len"])

    @blocking
    async def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove `key` and return its value; KeyError (or `default`) when it is absent."""
        got = await self._call("dict.pop", {"key": encode_key(key)})
        if not got["found"]:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return deserialize(got["value"], what=f"Dict value for {key!r}")

    @blocking
    async def update(self, other: Mapping[Any, Any] | None = None, /, **kwargs: Any) -> None:
        """Set many entries at once (in one write)."""
        items = dict(other or {})
        items.update(kwargs)
        pairs = [[encode_key(k), serialize(v, what=f"Dict value for {k!r}")] for k, v in items.items()]
        for start in range(0, len(pairs), MAX_UPDATE_ITEMS):
            await self._call("dict.put", {"items": pairs[start:start + MAX_UPDATE_ITEMS]})

    @blocking
    async def clear(self) -> None:
        """Remove every entry."""
        await self._call("dict.clear", {})

    async def _scan(self, values: bool) -> AsyncIterator[tuple[Any, Any]]:
        after = 0
        while True:
            got = await self._call("dict.scan", {"after": after, "limit": SCAN_PAGE, "values": values})
            for key, value in got["items"]:
                yield (pickle.loads(key),
                       deserialize(value, what="Dict value") if values and value is not None else None)
            after = got["next"]
            if got["done"]:
                return

    @iterating
    async def keys(self) -> AsyncIterator[Any]:
        """The keys, in insertion order (a key rewritten keeps its place)."""
        async for key, _ in self._scan(False):
            yield key

    @iterating
    async def values(self) -> AsyncIterator[Any]:
        async for _, value in self._scan(True):
            yield value

    @iterating
    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        async for item in self._scan(True):
            yield item

    # ---- Python's mapping protocol (blocking) ---------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def __contains__(self, key: Any) -> bool:
        return bool(self.contains(key))

    def __len__(self) -> int:
        return int(self.len())

    def __bool__(self) -> bool:
        return True  # a handle is truthy, as in Modal; `if d:` must not cost a round trip


Dict.objects = ObjectManager(Dict)
