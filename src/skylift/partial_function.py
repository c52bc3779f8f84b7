"""Decorators that mark functions and methods before `@app.function` / `@app.cls` see them:
`@method`, `@enter`, `@exit`, `@concurrent`, `@batched` (and, later, the web decorators).

A decorated method stays a `PartialFunction` on the user's class; reading it from an instance
gives the plain bound method, so code inside the container calls `self.helper(x)` as usual.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .exception import InvalidError


class Flag(enum.Flag):
    METHOD = enum.auto()
    ENTER_PRE_SNAPSHOT = enum.auto()
    ENTER_POST_SNAPSHOT = enum.auto()
    EXIT = enum.auto()
    BATCHED = enum.auto()
    CONCURRENT = enum.auto()
    WEB = enum.auto()


@dataclass
class PartialFunction:
    raw_f: Callable[..., Any]
    flags: Flag
    is_generator: bool = False
    max_batch_size: int | None = None
    batch_wait_ms: int | None = None
    max_concurrent_inputs: int | None = None
    target_concurrent_inputs: int | None = None
    web_config: dict[str, Any] = field(default_factory=dict)

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return self.raw_f.__get__(obj, objtype)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)

    def _merge(self, other_flags: Flag, **attrs: Any) -> PartialFunction:
        merged = PartialFunction(
            self.raw_f, self.flags | other_flags, self.is_generator, self.max_batch_size, self.batch_wait_ms,
            self.max_concurrent_inputs, self.target_concurrent_inputs, dict(self.web_config))
        for k, v in attrs.items():
            setattr(merged, k, v)
        return merged


def _is_generator(f: Callable[..., Any]) -> bool:
    return inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f)


def _wrap(f: Any, flag: Flag, name: str, **attrs: Any) -> PartialFunction:
    if isinstance(f, PartialFunction):
        return f._merge(flag, **attrs)
    if not callable(f):
        raise InvalidError(f"@modal.{name} must decorate a function, not {f!r}. Use @modal.{name}() with parentheses.")
    pf = PartialFunction(f, flag, is_generator=_is_generator(f))
    for k, v in attrs.items():
        setattr(pf, k, v)
    return pf


def method(_warn_parentheses_missing: Any = None, *, is_generator: bool | None = None
           ) -> Callable[[Callable[..., Any]], PartialFunction]:
    """Expose a method of an `@app.cls` class: `Model().predict.remote(x)`."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @modal.method() with parentheses")

    def decorator(f: Callable[..., Any]) -> PartialFunction:
        pf = _wrap(f, Flag.METHOD, "method")
        if is_generator is not None:
            pf.is_generator = is_generator
        return pf

    return decorator


def enter(_warn_parentheses_missing: Any = None, *, snap: bool = False
          ) -> Callable[[Callable[..., Any]], PartialFunction]:
    """Run once per container before any input. `snap=True` runs before a memory snapshot."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @modal.enter() with parentheses")
    flag = Flag.ENTER_PRE_SNAPSHOT if snap else Flag.ENTER_POST_SNAPSHOT
    return lambda f: _wrap(f, flag, "enter")


def exit(_warn_parentheses_missing: Any = None) -> Callable[[Callable[..., Any]], PartialFunction]:
    """Run once when the container shuts down."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @modal.exit() with parentheses")
    return lambda f: _wrap(f, Flag.EXIT, "exit")


def concurrent(_warn_parentheses_missing: Any = None, *, max_inputs: int, target_inputs: int | None = None
               ) -> Callable[[Any], Any]:
    """Let one container run up to `max_inputs` inputs at once (threads or asyncio tasks)."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @modal.concurrent(max_inputs=...) with parentheses")
    if not isinstance(max_inputs, int) or max_inputs < 1:
        raise InvalidError(f"@modal.concurrent: max_inputs must be a positive int, got {max_inputs!r}")
    if target_inputs is not None and not (1 <= target_inputs <= max_inputs):
        raise InvalidError(f"@modal.concurrent: target_inputs must be between 1 and max_inputs ({max_inputs})")

    def decorator(obj: Any) -> Any:
        if isinstance(obj, type):
            obj.__skylift_concurrency__ = (max_inputs, target_inputs)  # type: ignore[attr-defined]
            return obj
        return _wrap(obj, Flag.CONCURRENT, "concurrent", max_concurrent_inputs=max_inputs,
                     target_concurrent_inputs=target_inputs)

    return decorator


def batched(_warn_parentheses_missing: Any = None, *, max_batch_size: int, wait_ms: int
            ) -> Callable[[Callable[..., Any]], PartialFunction]:
    """Callers send single inputs; the function receives lists of up to `max_batch_size`."""
    if _warn_parentheses_missing is not None:
        raise InvalidError("use @modal.batched(max_batch_size=..., wait_ms=...) with parentheses")
    if not isinstance(max_batch_size, int) or not 1 <= max_batch_size <= 1000:
        raise InvalidError(f"@modal.batched: max_batch_size must be between 1 and 1000, got {max_batch_size!r}")
    if not isinstance(wait_ms, int) or not 0 <= wait_ms <= 600_000:
        raise InvalidError(f"@modal.batched: wait_ms must be between 0 and 600000, got {wait_ms!r}")
    return lambda f: _wrap(f, Flag.BATCHED, "batched", max_batch_size=max_batch_size, batch_wait_ms=wait_ms)


@dataclass
class ClassHooks:
    """The lifecycle of a user class, as the container runtime needs it."""

    enter_pre_snapshot: list[str]
    enter_post_snapshot: list[str]
    exit: list[str]
    methods: dict[str, PartialFunction]


def collect_hooks(user_cls: type) -> ClassHooks:
    hooks = ClassHooks([], [], [], {})
    for klass in reversed(user_cls.__mro__):
        for name, attr in vars(klass).items():
            if not isinstance(attr, PartialFunction):
                continue
            if Flag.ENTER_PRE_SNAPSHOT in attr.flags:
                hooks.enter_pre_snapshot.append(name)
            if Flag.ENTER_POST_SNAPSHOT in attr.flags:
                hooks.enter_post_snapshot.append(name)
            if Flag.EXIT in attr.flags:
                hooks.exit.append(name)
            if attr.flags & (Flag.METHOD | Flag.BATCHED | Flag.WEB):
                hooks.methods[name] = attr
    return hooks


_WEB_DECORATORS = ("asgi_app", "fastapi_endpoint", "web_endpoint", "web_server", "wsgi_app")


def __getattr__(name: str) -> Any:
    # Modal's web decorators live in `modal.partial_function` too; here they are `skylift.web`'s (loaded on
    # first use: web.py imports this module).
    if name in _WEB_DECORATORS:
        from . import web

        return getattr(web, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
