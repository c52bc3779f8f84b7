"""`@app.cls` classes: lifecycle hooks, methods and `modal.parameter()` (Modal's API).

    @app.cls(cpu=2)
    class Model:
        size: int = modal.parameter(default=1)

        @modal.enter()
        def load(self): self.weights = ...

        @modal.method()
        def predict(self, x): ...

    Model(size=3).predict.remote(1)

Each distinct set of parameter values is its own container pool. A class is backed by one
"class service function" (tag = class name); a method call carries the method's name.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from . import _serialization
from ._aio import blocking
from .exception import InvalidError, NotFoundError
from .functions import Function
from .partial_function import Flag, PartialFunction, collect_hooks

if TYPE_CHECKING:
    from .app import App

_MISSING = object()


class _Parameter:
    def __init__(self, default: Any, init: bool) -> None:
        self.default = default
        self.init = init

    def __repr__(self) -> str:
        return f"modal.parameter(default={self.default!r})" if self.default is not _MISSING else "modal.parameter()"


def is_parameter(p: Any) -> bool:
    """Whether `p` is a `modal.parameter()` that is set through the constructor (`init=True`)."""
    return isinstance(p, _Parameter) and p.init


def parameter(*, default: Any = _MISSING, init: bool = True) -> Any:
    """Declare a class parameter: `name: str = modal.parameter(default="x")`."""
    if default is not _MISSING and not isinstance(default, _serialization.PARAM_TYPES):
        raise InvalidError(f"modal.parameter default {default!r} must be a str, int, bool or bytes")
    return _Parameter(default, init)


def parameter_specs(user_cls: type) -> dict[str, tuple[type | None, Any]]:
    """name → (annotated type, default or _MISSING) for every modal.parameter() of the class."""
    specs: dict[str, tuple[type | None, Any]] = {}
    for klass in reversed(user_cls.__mro__):
        annotations = inspect.get_annotations(klass)
        for name, value in vars(klass).items():
            if isinstance(value, _Parameter):
                annotation = annotations.get(name)
                typ = annotation if isinstance(annotation, type) else _type_from_string(annotation)
                specs[name] = (typ, value.default)
    return specs


def _type_from_string(annotation: Any) -> type | None:
    return {"str": str, "int": int, "bool": bool, "bytes": bytes}.get(str(annotation))


def validate_params(user_cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Complete and check parameter values; errors name the class and the parameter."""
    specs = parameter_specs(user_cls)
    name = user_cls.__name__
    unknown = set(kwargs) - set(specs)
    if unknown:
        raise InvalidError(f"{name}() got unknown parameter(s) {', '.join(sorted(unknown))}; declare them with "
                           f"`x: int = modal.parameter()` (it has: {', '.join(sorted(specs)) or 'none'})")
    values: dict[str, Any] = {}
    for pname, (typ, default) in specs.items():
        if pname in kwargs:
            value = kwargs[pname]
        elif default is not _MISSING:
            value = default
        else:
            raise InvalidError(f"{name}() is missing the required parameter {pname!r}")
        if typ is not None and typ in _serialization.PARAM_TYPES and not (
                isinstance(value, typ) and not (typ is int and isinstance(value, bool))):
            raise InvalidError(f"{name}() parameter {pname!r} must be {typ.__name__}, got {type(value).__name__}")
        values[pname] = value
    return values


def default_params(user_cls: type) -> bytes | None:
    """The encoded parameter set of `Cls()` when every parameter has a default (None otherwise, or
    when there are no parameters). The control plane keeps `min_containers` warm for that pool."""
    specs = parameter_specs(user_cls)
    if not specs or any(default is _MISSING for _, default in specs.values()):
        return None
    return _serialization.encode_params(validate_params(user_cls, {}))


def instantiate_user_class(user_cls: type, params: dict[str, Any]) -> Any:
    """Build the user's object with its parameters set (no hooks run). Used in the container."""
    has_own_init = any("__init__" in vars(k) for k in user_cls.__mro__ if k is not object)
    if has_own_init and not parameter_specs(user_cls):
        return user_cls(**params)
    obj: Any = object.__new__(user_cls)
    for key, value in params.items():
        setattr(obj, key, value)
    return obj


class Cls:
    """A class deployed with `@app.cls`; call it with parameters to get an object."""

    def __init__(self, user_cls: type | None, tag: str, service: Function, app: App | None = None) -> None:
        self._user_cls = user_cls
        self._tag = tag
        self._service = service
        self._app = app
        self._local_objects: dict[bytes | None, Any] = {}
        if user_cls is not None:
            self.__doc__ = user_cls.__doc__
            self.__name__ = user_cls.__name__
            self.__qualname__ = user_cls.__qualname__
            self.__module__ = user_cls.__module__

    def __repr__(self) -> str:
        return f"Cls({self._tag!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Obj:
        if args:
            raise InvalidError(f"{self._tag}() takes parameters as keywords only, e.g. {self._tag}(name=...)")
        if self._user_cls is not None:
            kwargs = validate_params(self._user_cls, kwargs)
        return Obj(self, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._user_cls is not None and isinstance(getattr(self._user_cls, name, None), PartialFunction):
            raise InvalidError(f"call methods on an instance: {self._tag}().{name}.remote(...), "
                               f"not {self._tag}.{name}.remote(...)")
        raise AttributeError(f"{self._tag} has no attribute {name!r}")

    @property
    def object_id(self) -> str:
        return self._service.object_id

    def _method_names(self) -> dict[str, bool]:
        """method name → is_generator."""
        if self._user_cls is not None:
            return {n: pf.is_generator for n, pf in collect_hooks(self._user_cls).methods.items()}
        definition = self._service._definition or {}
        return {n: bool(m.get("is_generator")) for n, m in (definition.get("methods") or {}).items()}

    @classmethod
    def from_name(cls, app_name: str, name: str, *, environment_name: str | None = None,
                  version: int | None = None, client: Any = None) -> Cls:
        """A handle to a class of a deployed app; hydrated lazily."""
        service = Function.from_name(app_name, name, environment_name=environment_name, version=version)
        return cls(None, name, service)

    def with_options(self, **options: Any) -> Cls:
        return Cls(self._user_cls, self._tag, self._service.with_options(**options), self._app)

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Cls:
        return Cls(self._user_cls, self._tag,
                   self._service.with_concurrency(max_inputs=max_inputs, target_inputs=target_inputs), self._app)

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Cls:
        return Cls(self._user_cls, self._tag,
                   self._service.with_batching(max_batch_size=max_batch_size, wait_ms=wait_ms), self._app)

    @blocking
    async def hydrate(self, client: Any = None) -> Cls:
        """Look the class up now (normally done on first use)."""
        await self._service._hydrate()
        return self

    def _local_instance(self, params: dict[str, Any]) -> Any:
        """For `.local()`: one object per parameter set in this process, @enter hooks run once."""
        if self._user_cls is None:
            raise InvalidError(f"{self._tag} was looked up by name; .local() needs the class definition")
        key = _serialization.encode_params(params)
        if key not in self._local_objects:
            obj = instantiate_user_class(self._user_cls, params)
            hooks = collect_hooks(self._user_cls)
            for hook in hooks.enter_pre_snapshot + hooks.enter_post_snapshot:
                result = getattr(obj, hook)()
                if inspect.iscoroutine(result):
                    import asyncio

                    asyncio.run(result)
            self._local_objects[key] = obj
        return self._local_objects[key]


class Obj:
    """An instance of a Cls with fixed parameters: `Model(size=3)`. Its methods are Functions."""

    def __init__(self, cls: Cls, params: dict[str, Any]) -> None:
        self._cls = cls
        self._params = params
        self._encoded = _serialization.encode_params(params)
        self._methods: dict[str, Function] = {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{self._cls._tag}({args})"

    def __getattr__(self, name: str) -> Function:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._methods:
            methods = self._cls._method_names()
            if self._cls._user_cls is not None and name not in methods:
                attr = getattr(self._cls._user_cls, name, None)
                if attr is None:
                    raise AttributeError(f"{self._cls._tag} has no method {name!r}")
                raise InvalidError(f"{self._cls._tag}.{name} is not a remote method; decorate it with @modal.method()")
            fn = Function(None, self._cls._tag, app=self._cls._app, is_generator=methods.get(name, False))
            if self._cls._user_cls is not None:
                fn._raw_f = getattr(self._cls._user_cls, name).raw_f
            fn._service = self._cls._service
            fn._params = self._encoded
            fn._method = name
            fn._cls = self._cls
            self._methods[name] = fn
        return self._methods[name]

    def update_autoscaler(self, **settings: Any) -> None:
        self._cls._service.update_autoscaler(**settings)


def check_user_class(user_cls: type) -> None:
    """Reject class definitions Modal rejects, with the fix in the message."""
    if not isinstance(user_cls, type):
        raise InvalidError(f"@app.cls must decorate a class, not {user_cls!r}")
    hooks = collect_hooks(user_cls)
    batched = [n for n, pf in hooks.methods.items() if Flag.BATCHED in pf.flags]
    if batched and len(hooks.methods) > 1:
        raise InvalidError(f"{user_cls.__name__}: a class with a @modal.batched method ({batched[0]}) may have no "
                           "other methods")
    for name, value in vars(user_cls).items():
        if isinstance(value, PartialFunction) and Flag.CONCURRENT in value.flags:
            raise InvalidError(f"{user_cls.__name__}.{name}: @modal.concurrent goes on the class, not on methods")


def lookup_method_flags(cls: Cls, name: str) -> PartialFunction:
    if cls._user_cls is None:
        raise NotFoundError(name)
    return collect_hooks(cls._user_cls).methods[name]
