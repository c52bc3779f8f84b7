"""Find the user's function or class in the container, and what each input calls.

The definition names the object by module and qualname, or carries it cloudpickled
(`serialized`). What is found is a `skylift.functions.Function` (its `get_raw_f()` is the user's
function), a `skylift.cls.Cls` (its `_user_cls` is the user's class), or, when serialized, the
plain function or class itself.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import _modal_alias
from ..exception import InvalidError
from ..partial_function import ClassHooks, PartialFunction, collect_hooks


@dataclass
class Target:
    """What one method name resolves to, and how it must be run."""

    fn: Callable[..., Any]
    is_async: bool
    is_generator: bool
    batch: tuple[int, int] | None = None  # (max_batch_size, wait_ms)
    # A web endpoint's request handler: its response went out over `container.web_send`, so its
    # output says only how it ended (no pickled return value, no library versions).
    web: bool = False


@dataclass
class Service:
    """The user's code, loaded: a function, or an instance of a class with its hooks."""

    function: Callable[..., Any] | None = None
    instance: Any = None
    hooks: ClassHooks | None = None
    definition: dict[str, Any] = field(default_factory=dict)
    _targets: dict[str | None, Target] = field(default_factory=dict)

    @property
    def is_class(self) -> bool:
        return self.instance is not None

    def target(self, method: str | None) -> Target:
        """The callable for an input's `method` (None for a plain function)."""
        cached = self._targets.get(method)
        if cached is not None:
            return cached
        target = self._resolve(method)
        self._targets[method] = target
        return target

    def _resolve(self, method: str | None) -> Target:
        batching = self.definition.get("batching")
        batch = (int(batching["max_batch_size"]), int(batching["wait_ms"])) if batching else None
        declared = bool(self.definition.get("is_generator"))
        if self.function is not None:
            return _target(self.function, declared, batch)
        assert self.hooks is not None
        if not method:
            raise InvalidError(
                f"an input for class {type(self.instance).__qualname__} names no method; "
                f"call one of: {', '.join(sorted(self.hooks.methods)) or '(none)'}")
        pf = self.hooks.methods.get(method)
        if pf is None and not callable(getattr(type(self.instance), method, None)):
            raise InvalidError(
                f"class {type(self.instance).__qualname__} has no method {method!r}; "
                f"methods: {', '.join(sorted(self.hooks.methods)) or '(none)'}")
        bound = getattr(self.instance, method)
        meta = (self.definition.get("methods") or {}).get(method) or {}
        declared = bool(meta.get("is_generator")) or bool(pf is not None and pf.is_generator)
        if batch is None and pf is not None and pf.max_batch_size is not None:
            batch = (pf.max_batch_size, pf.batch_wait_ms or 0)
        return _target(bound, declared, batch)

    async def run_hooks(self, names: list[str]) -> None:
        for name in names:
            result = getattr(self.instance, name)()
            if inspect.isawaitable(result):
                await result

    async def enter(self) -> None:
        await self.enter_pre_snapshot()
        await self.enter_post_snapshot()

    async def enter_pre_snapshot(self) -> None:
        """`@enter(snap=True)`: once per memory snapshot (or first, in a container without one)."""
        if self.hooks is not None:
            await self.run_hooks(self.hooks.enter_pre_snapshot)

    async def enter_post_snapshot(self) -> None:
        """`@enter()` / `@enter(snap=False)`: once in every container."""
        if self.hooks is not None:
            await self.run_hooks(self.hooks.enter_post_snapshot)

    async def exit(self) -> None:
        if self.hooks is not None:
            await self.run_hooks(self.hooks.exit)


def _target(fn: Callable[..., Any], declared_generator: bool, batch: tuple[int, int] | None) -> Target:
    is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
    is_gen = declared_generator or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
    return Target(fn, is_async, is_gen, batch)


def find_object(definition: dict[str, Any]) -> Any:
    """Import (or unpickle) the object a definition names; the user's `import modal` imports skylift."""
    _modal_alias.install()
    serialized = definition.get("serialized")
    if serialized:
        import cloudpickle

        return cloudpickle.loads(serialized)
    module_name = definition.get("module")
    qualname = definition.get("qualname") or ""
    if not module_name:
        raise InvalidError(
            f"function definition {definition.get('tag')!r} has neither a module nor a serialized body")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        if part == "<locals>":
            raise InvalidError(
                f"{module_name}.{qualname} is defined inside a function and can't be imported in the "
                "container; define it at module level or use serialized=True")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InvalidError(
                f"module {module_name!r} has no attribute {qualname!r} in the container; is the image's "
                "copy of the source the same as the local one?") from None
    return obj


def unwrap(obj: Any) -> Any:
    """The user's own function or class behind an SDK object."""
    if isinstance(obj, PartialFunction):
        return obj.raw_f
    if not isinstance(obj, type) and type(obj).__module__.startswith("skylift."):
        user_cls = getattr(obj, "_user_cls", None)
        if isinstance(user_cls, type):
            return user_cls
        get_raw_f = getattr(obj, "get_raw_f", None)
        if callable(get_raw_f):
            return get_raw_f()
    return obj


def instantiate(user_cls: type, params: dict[str, Any]) -> Any:
    """An instance of the user's class with its parameters, as the SDK constructs it locally."""
    try:
        sdk_cls = importlib.import_module("skylift.cls")
    except ImportError:
        sdk_cls = None
    make = getattr(sdk_cls, "instantiate_user_class", None)
    if make is not None:
        return make(user_cls, params)
    return user_cls(**params)


def load(definition: dict[str, Any], params: dict[str, Any]) -> Service:
    """Import the user's code and build the service; @enter hooks run later (`Service.enter`)."""
    obj = unwrap(find_object(definition))
    if isinstance(obj, type):
        instance = instantiate(obj, params)
        return Service(instance=instance, hooks=collect_hooks(obj), definition=definition)
    if not callable(obj):
        raise InvalidError(
            f"{definition.get('qualname')!r} is a {type(obj).__name__}, not a function or class")
    return Service(function=obj, definition=definition)
