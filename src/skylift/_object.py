"""What Secrets, Volumes, Dicts and Queues share: lazy handles to named control-plane objects.

`X.from_name("n")` makes a handle and nothing else; the first use looks the name up (creating
the object with `create_if_missing=True`) and remembers its id. A handle pickles by reference, so
a Dict passed to `.remote()` is the same Dict in the container. `X.ephemeral()` makes an anonymous
object that is deleted when the block ends (or when this process's connection does).
`X.objects.create/list/delete` manage named objects, like Modal's `modal.X.objects`.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from . import _options, config
from ._aio import blocking, context_classmethod
from ._client import Client, run_async, run_sync
from .exception import InvalidError, NotFoundError

ObjT = TypeVar("ObjT", bound="_Object")

Loader = Callable[[Client], Awaitable[str]]


@dataclass(frozen=True)
class ObjectInfo:
    """What `X.info()` and `X.objects.list()` tell about an object."""

    name: str | None
    object_id: str
    created_at: datetime.datetime
    created_by: str | None = None


def _info(raw: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(raw.get("name"), raw["object_id"], datetime.datetime.fromtimestamp(raw["created_at"]))


class _Object:
    _kind: ClassVar[str] = ""
    _title: ClassVar[str] = ""

    def __init__(self, *, name: str | None, environment_name: str | None, object_id: str | None = None,
                 loader: Loader | None = None, create_if_missing: bool = False) -> None:
        self._name = name
        self._environment_name = environment_name
        self._object_id = object_id
        self._loader = loader
        self._create_if_missing = create_if_missing
        self._lock: asyncio.Lock | None = None
        self._hydrated_for: Client | None = None

    def __repr__(self) -> str:
        label = repr(self._name) if self._name else (self._object_id or "unhydrated")
        return f"{self._title}.from_name({label})" if self._name else f"{self._title}({label})"

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def _by_name(cls: type[ObjT], name: str, environment_name: str | None, create_if_missing: bool,
                 extra: dict[str, Any] | None = None) -> ObjT:
        _options.check_object_name(name, cls._title)
        kind = cls._kind

        async def load(client: Client) -> str:
            params = {"kind": kind, "name": name, "environment": config.environment_name(environment_name),
                      "create_if_missing": create_if_missing, **(extra or {})}
            got = await client.call("object.get", params)
            return str(got["object_id"])

        return cls(name=name, environment_name=environment_name, loader=load, create_if_missing=create_if_missing)

    @classmethod
    def from_id(cls: type[ObjT], object_id: str, client: Any = None) -> ObjT:
        """A handle to an object by its id (e.g. one passed along from another program)."""
        return cls._from_id(object_id)

    @classmethod
    def _from_id(cls: type[ObjT], object_id: str) -> ObjT:
        if not isinstance(object_id, str) or not object_id.startswith(_ID_PREFIX[cls._kind] + "-"):
            raise InvalidError(f"{object_id!r} is not a {cls._title} id")
        return cls(name=None, environment_name=None, object_id=object_id)

    @context_classmethod
    def ephemeral(cls: type[ObjT], *, client: Any = None, environment_name: str | None = None) -> _Ephemeral[ObjT]:
        """An anonymous object that lives for the `with` block (`with X.ephemeral() as x:`)."""
        return _Ephemeral(cls, environment_name)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._object_id is None and self._name is None:
            raise InvalidError(f"this {self._title} can't be pickled before it is created; use it once first")
        return (_rebuild, (type(self), self._name, self._environment_name, self._object_id, self._create_if_missing))

    # ---- hydration ----------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def object_id(self) -> str:
        if self._object_id is None:
            run_sync(self._hydrate())
        assert self._object_id is not None
        return self._object_id

    def _fresh(self, client: Client) -> bool:
        # An id found through one client is looked up again through another (tests and tools that
        # switch SKYLIFT_HOME); handles made from an id keep it.
        return self._object_id is not None and (self._loader is None or self._hydrated_for is client)

    async def _hydrate(self) -> str:
        client = Client.from_env()
        if self._fresh(client):
            assert self._object_id is not None
            return self._object_id
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._fresh(client):
                if self._loader is None:
                    raise InvalidError(f"this {self._title} has no name or id to look up")
                self._object_id = await self._loader(client)
                self._hydrated_for = client
        assert self._object_id is not None
        return self._object_id

    @blocking
    async def hydrate(self: ObjT) -> ObjT:
        """Look the object up now (normally done on first use)."""
        await self._hydrate()
        return self

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        object_id = await self._hydrate()
        return await Client.from_env().call(method, {_ID_FIELD[self._kind]: object_id, **params})

    @blocking
    async def info(self) -> ObjectInfo:
        """Name, id and creation time."""
        object_id = await self._hydrate()
        got = await Client.from_env().call("object.info", {"kind": self._kind, "object_id": object_id})
        return _info(got)


_ID_PREFIX = {"secret": "st", "volume": "vo", "dict": "di", "queue": "qu"}
_ID_FIELD = {"secret": "secret_id", "volume": "volume_id", "dict": "dict_id", "queue": "queue_id"}


def _rebuild(cls: type[ObjT], name: str | None, environment_name: str | None, object_id: str | None,
             create_if_missing: bool) -> ObjT:
    if object_id is not None:
        obj = cls(name=name, environment_name=environment_name, object_id=object_id)
        return obj
    assert name is not None
    return cls._by_name(name, environment_name, create_if_missing)


class _Ephemeral(Generic[ObjT]):
    """`with X.ephemeral() as x:` and `async with X.ephemeral() as x:`."""

    def __init__(self, cls: type[ObjT], environment_name: str | None) -> None:
        self._cls = cls
        self._environment_name = environment_name
        self._obj: ObjT | None = None

    async def _create(self) -> ObjT:
        client = Client.from_env()
        got = await client.call("object.ephemeral", {"kind": self._cls._kind,
                                                     "environment": config.environment_name(self._environment_name)})
        self._obj = self._cls(name=None, environment_name=self._environment_name, object_id=got["object_id"])
        return self._obj

    async def _delete(self) -> None:
        if self._obj is not None and self._obj._object_id is not None:
            try:
                await Client.from_env().call("object.delete", {"kind": self._cls._kind,
                                                               "object_id": self._obj._object_id})
            except NotFoundError:
                pass

    def __enter__(self) -> ObjT:
        return run_sync(self._create())

    def __exit__(self, *exc: object) -> None:
        run_sync(self._delete())

    async def __aenter__(self) -> ObjT:
        return await run_async(self._create())

    async def __aexit__(self, *exc: object) -> None:
        await run_async(self._delete())


class ObjectManager:
    """`X.objects`: create, list and delete named objects of one kind."""

    def __init__(self, cls: type[_Object]) -> None:
        self._cls = cls

    @blocking
    async def create(self, name: str, *, allow_existing: bool = False, environment_name: str | None = None) -> None:
        """Create a named object; raises AlreadyExistsError unless `allow_existing`."""
        from .exception import AlreadyExistsError

        _options.check_object_name(name, self._cls._title)
        client = Client.from_env()
        got = await client.call("object.get", {"kind": self._cls._kind, "name": name, "create_if_missing": True,
                                               "environment": config.environment_name(environment_name)})
        if not got.get("created") and not allow_existing:
            raise AlreadyExistsError(f"{self._cls._title} {name!r} already exists")

    @blocking
    async def list(self, *, environment_name: str | None = None) -> builtins.list[Any]:
        """Every named object of this kind in the environment."""
        client = Client.from_env()
        got = await client.call("object.list", {"kind": self._cls._kind,
                                                "environment": config.environment_name(environment_name)})
        return [self._cls(name=o["name"], environment_name=environment_name, object_id=o["object_id"])
                for o in got["objects"]]

    @blocking
    async def delete(self, name: str, *, allow_missing: bool = False, environment_name: str | None = None) -> None:
        """Delete a named object and everything in it."""
        client = Client.from_env()
        await client.call("object.delete", {"kind": self._cls._kind, "name": name, "allow_missing": allow_missing,
                                            "environment": config.environment_name(environment_name)})


async def list_objects(kind: str, environment_name: str | None) -> list[dict[str, Any]]:
    """Raw listing for the CLI: [{object_id, name, created_at, size}]."""
    got = await Client.from_env().call("object.list", {"kind": kind,
                                                       "environment": config.environment_name(environment_name)})
    return list(got["objects"])
