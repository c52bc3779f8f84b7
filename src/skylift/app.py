"""`App`: a named group of functions and classes, run ephemerally or deployed (Modal's API).

Example:
    >>> import skylift as modal
    >>> app = modal.App("demo")
    >>> @app.function(timeout=60)
    ... def add(a: int, b: int) -> int:
    ...     return a + b
    >>> sorted(app.registered_functions)
    ['add']
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

from . import _options
from ._aio import blocking, blocking_classmethod, context_method, local_method
from .cls import Cls, check_user_class, default_params, parameter_specs
from .exception import InvalidError
from .functions import Function
from .partial_function import Flag, PartialFunction, collect_hooks


class LocalEntrypoint:
    """A function run locally by `skylift run`; its parameters become CLI flags."""

    def __init__(self, raw_f: Callable[..., Any], app: App, name: str) -> None:
        self.raw_f = raw_f
        self.app = app
        self.name = name
        self.__doc__ = raw_f.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.raw_f(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LocalEntrypoint({self.name!r})"


class App:
    """Groups functions and classes into one unit of deployment and one log stream."""

    def __init__(self, name: str | None = None, *, image: Any = None, secrets: list[Any] | None = None,
                 volumes: dict[str, Any] | None = None, include_source: bool = True,
                 tags: dict[str, str] | None = None, description: str | None = None,
                 strict_containers: bool = False) -> None:
        """`strict_containers=True` (skylift's, off by default) keeps this app's containers to their own
        app: its functions and calls, the volumes they mount and the secrets they attach; by default a
        container reaches its workspace's deployed functions and named objects, as in Modal."""
        if name is not None:
            _options.check_object_name(name, "App")
        if not isinstance(strict_containers, bool):
            raise InvalidError(f"App({name!r}): strict_containers must be True or False, "
                               f"not {strict_containers!r}")
        self._strict_containers = strict_containers
        self._name = name
        self._description = description or name
        self._image = image
        self._secrets = list(secrets or [])
        self._volumes = dict(volumes or {})
        self._include_source = include_source
        self._tags = dict(tags or {})
        self._functions: dict[str, Function] = {}
        self._classes: dict[str, Cls] = {}
        self._entrypoints: dict[str, LocalEntrypoint] = {}
        self._app_id: str | None = None
        self._running = False
        self._secrets, self._volumes = _options.check_secrets_and_volumes(secrets, volumes, owner=f"App({name!r})")

    def __repr__(self) -> str:
        return f"App({self._name!r})"

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def app_id(self) -> str | None:
        return self._app_id

    @property
    def strict_containers(self) -> bool:
        return self._strict_containers

    @property
    def description(self) -> str | None:
        return self._description

    @property
    def image(self) -> Any:
        return self._image

    @property
    def registered_functions(self) -> dict[str, Function]:
        return dict(self._functions)

    @property
    def registered_classes(self) -> dict[str, Cls]:
        return dict(self._classes)

    @property
    def registered_entrypoints(self) -> dict[str, LocalEntrypoint]:
        return dict(self._entrypoints)

    @local_method
    def set_tags(self, tags: dict[str, str], *, client: Any = None) -> None:
        self._tags.update(tags)

    @local_method
    def get_tags(self, *, client: Any = None) -> dict[str, str]:
        return dict(self._tags)

    @property
    def registered_web_endpoints(self) -> list[str]:
        """Tags of this app's web endpoints as defined here (`Cls.method` for web methods of classes)."""
        names = [tag for tag, fn in self._functions.items() if fn._options.get("web")]
        for tag, c in self._classes.items():
            methods = c._service._options.get("methods") or {}
            names += [f"{tag}.{m}" for m, meta in methods.items() if meta.get("web")]
        return names

    # --- introspection of a running or deployed app (docs/modal-compatibility.md) -----------

    def _require_app_id(self, what: str) -> str:
        if self._app_id is None:
            raise InvalidError(f"{self!r}.{what}() needs a running or deployed app: call it inside "
                               f"`with app.run():`, after `app.deploy()`, or on `App.lookup(name)`")
        return self._app_id

    @blocking
    async def stop(self, *, client: Any = None) -> None:
        """Stop the app: its containers end, pending inputs fail and its functions can't be called."""
        from ._client import Client

        await Client.from_env().call("app.stop", {"app_id": self._require_app_id("stop")})

    @blocking
    async def info(self, refresh: bool = False) -> Any:
        """`modal.types.AppInfo`: the app's id, description, lifecycle and functions (name -> id)."""
        from ._client import Client
        from ._introspection import app_info

        got = await Client.from_env().call("app.info", {"app_id": self._require_app_id("info")})
        return app_info(got)

    @property
    def logs(self) -> Any:
        """The app's log: `app.logs.fetch(since=...)`, `app.logs.tail(n)`, `app.logs.stream()` (each
        yields `modal.types.LogEntry`; `.aio` forms too)."""
        from ._introspection import LogsManager, Target

        async def target() -> Target:
            app_id = self._require_app_id("logs")
            return app_id, app_id, None

        return LogsManager(target)

    # --- registration ----------------------------------------------------------------------

    def _check_tag(self, tag: str) -> None:
        if tag in self._functions or tag in self._classes:
            warnings.warn(f"{tag!r} is defined twice in {self!r}; the later definition wins", stacklevel=4)

    def function(self, _warn_parentheses_missing: Any = None, **options: Any) -> Callable[[Any], Function]:
        """Decorator: turn a function into a remote Function. Takes Modal's parameters
        (image, gpu, cpu, memory, timeout, retries, secrets, volumes, min_containers, …)."""
        if _warn_parentheses_missing is not None:
            raise InvalidError("use @app.function() with parentheses")

        def decorator(f: Any) -> Function:
            if isinstance(f, Function):
                raise InvalidError(f"{f.tag} is already a skylift Function; decorate it once")
            if isinstance(f, type):
                raise InvalidError(f"@app.function decorates functions; use @app.cls() for the class {f.__name__}")
            pf = f if isinstance(f, PartialFunction) else None
            raw_f = pf.raw_f if pf is not None else f
            if not callable(raw_f):
                raise InvalidError(f"@app.function must decorate a function, not {raw_f!r}")
            if pf is not None and pf.flags & (Flag.METHOD | Flag.ENTER_PRE_SNAPSHOT | Flag.ENTER_POST_SNAPSHOT
                                              | Flag.EXIT):
                raise InvalidError(
                    f"{raw_f.__name__}: @modal.method/@enter/@exit belong on methods of an @app.cls class")
            tag = options.get("name") or raw_f.__name__
            opts = _options.function_options(options, name=tag, partial=pf, app=self)
            forced = options.get("is_generator")
            is_generator = bool(forced) if forced is not None else (
                inspect.isgeneratorfunction(raw_f) or inspect.isasyncgenfunction(raw_f))
            if is_generator and opts.get("retries"):
                raise InvalidError(f"{tag}: retries are not supported on generator functions")
            self._check_tag(tag)
            fn = Function(raw_f, tag, app=self, options=opts, is_generator=is_generator)
            self._functions[tag] = fn
            return fn

        return decorator

    def cls(self, _warn_parentheses_missing: Any = None, **options: Any) -> Callable[[type], Cls]:
        """Decorator: turn a class into a remote Cls with @enter/@exit hooks and @method methods."""
        if _warn_parentheses_missing is not None:
            raise InvalidError("use @app.cls() with parentheses")

        def decorator(user_cls: type) -> Cls:
            check_user_class(user_cls)
            tag = options.get("name") or user_cls.__name__
            concurrency = getattr(user_cls, "__skylift_concurrency__", None)
            opts = _options.function_options(options, name=tag, partial=None, app=self)
            if concurrency is not None:
                opts["concurrency"] = {"max_inputs": concurrency[0], "target_inputs": concurrency[1]}
            hooks = collect_hooks(user_cls)
            if not hooks.methods:
                warnings.warn(f"{tag} has no @modal.method(); nothing can be called on it", stacklevel=2)
            for pf in hooks.methods.values():
                if Flag.BATCHED in pf.flags:
                    opts["batching"] = {"max_batch_size": pf.max_batch_size, "wait_ms": pf.batch_wait_ms}
            if hooks.enter_pre_snapshot and not opts.get("enable_memory_snapshot"):
                raise InvalidError(f"{tag}: @modal.enter(snap=True) needs enable_memory_snapshot=True on @app.cls")
            opts["methods"] = {n: {"is_generator": pf.is_generator} for n, pf in hooks.methods.items()}
            for n, pf in hooks.methods.items():
                if Flag.WEB in pf.flags:
                    opts["methods"][n]["web"] = dict(pf.web_config)
            # Which parameter set min_containers keeps warm before anyone calls (see _definition).
            opts["parameters"] = sorted(parameter_specs(user_cls))
            opts["default_params"] = default_params(user_cls)
            for n, pf in hooks.methods.items():
                if Flag.WEB in pf.flags:
                    opts["methods"][n]["web"] = dict(pf.web_config)
            self._check_tag(tag)
            service = Function(None, tag, app=self, options=opts)
            service._raw_f = None
            c = Cls(user_cls, tag, service, app=self)
            service._cls = c
            self._classes[tag] = c
            return c

        return decorator

    def local_entrypoint(self, _warn_parentheses_missing: Any = None, *, name: str | None = None
                         ) -> Callable[[Callable[..., Any]], LocalEntrypoint]:
        """Decorator: the function `skylift run` calls locally; its parameters become CLI flags."""
        if _warn_parentheses_missing is not None:
            raise InvalidError("use @app.local_entrypoint() with parentheses")

        def decorator(f: Callable[..., Any]) -> LocalEntrypoint:
            tag = name or f.__name__
            if tag in self._entrypoints:
                raise InvalidError(f"local entrypoint {tag!r} is defined twice in {self!r}")
            entry = LocalEntrypoint(f, self, tag)
            self._entrypoints[tag] = entry
            return entry

        return decorator

    def include(self, other_app: App, inherit_tags: bool = True) -> App:
        """Merge another App's functions and classes into this one (multi-file projects)."""
        for tag, fn in other_app._functions.items():
            self._check_tag(tag)
            self._functions[tag] = fn
        for tag, c in other_app._classes.items():
            self._check_tag(tag)
            self._classes[tag] = c
        if inherit_tags:
            self._tags = {**other_app._tags, **self._tags}
        return self

    # --- running ----------------------------------------------------------------------------

    @context_method
    def run(self, *, client: Any = None, detach: bool = False, interactive: bool = False,
            environment_name: str | None = None, name: str | None = None, show_progress: Any = None) -> Any:
        """Context manager running this app ephemerally: `with app.run(): f.remote()`."""
        from ._runner import AppRun

        return AppRun(self, detach=detach, environment_name=environment_name, name=name)

    @blocking
    async def deploy(self, *, name: str | None = None, environment_name: str | None = None, tag: str = "",
                     client: Any = None, strategy: str = "rolling") -> App:
        """Deploy this app (like `skylift deploy`): functions stay available by name. skylift's deploys
        are Modal's "rolling" strategy: new inputs go to new containers while the old ones drain."""
        from ._runner import deploy_app_async

        if strategy != "rolling":
            raise InvalidError(f"App.deploy(strategy={strategy!r}): skylift deploys with the 'rolling' strategy "
                               "only (old containers drain); 'recreate' is not available")
        await deploy_app_async(self, name=name, environment_name=environment_name, tag=tag)
        return self

    @blocking_classmethod
    async def lookup(cls: type[App], name: str, *, environment_name: str | None = None,  # type: ignore[misc]
                     create_if_missing: bool = False, client: Any = None) -> App:
        """A handle to a deployed app by name (`create_if_missing=True` makes an empty deployed app)."""
        from ._runner import lookup_app_async

        return await lookup_app_async(name, environment_name=environment_name, create_if_missing=create_if_missing)


class Stub(App):
    """Deprecated name of App."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn("modal.Stub is deprecated; use modal.App", DeprecationWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
