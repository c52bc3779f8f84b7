"""`Function` and `FunctionCall`: handles to remote functions and to their calls (Modal's API).

A Function is a lazily hydrated handle: defined by `@app.function`, it gets its `fu-` id when
the app runs (`skylift run`, `with app.run()`, `skylift deploy`); from `Function.from_name` it
hydrates on first use.

Example:
    >>> import skylift as modal
    >>> app = modal.App("example")
    >>> @app.function()
    ... def square(x: int) -> int:
    ...     return x * x
    >>> square.local(3)
    9
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sized
from typing import TYPE_CHECKING, Any

from . import _invocation, _output, config
from ._aio import blocking, blocking_classmethod, iterating, iterating_batches, local_classmethod
from ._client import Client, on_loop_thread, run_async, run_sync
from ._invocation import Target
from .exception import ExecutionError, InvalidError

if TYPE_CHECKING:
    from .app import App
    from .cls import Cls


class Function:
    """A function that runs remotely. Create with `@app.function()`, or `Function.from_name`."""

    def __init__(self, raw_f: Callable[..., Any] | None, tag: str, *, app: App | None = None,
                 options: dict[str, Any] | None = None, is_generator: bool = False) -> None:
        self._raw_f = raw_f
        self._tag = tag
        self._app = app
        self._options: dict[str, Any] = options or {}
        self._is_generator = is_generator
        self._object_id: str | None = None
        self._definition: dict[str, Any] | None = None
        self._from_name: tuple[str, str, str | None, int | None] | None = None
        self._variant_of: Function | None = None
        self._overrides: dict[str, Any] = {}
        self._hydrate_lock: asyncio.Lock | None = None
        # For methods of a Cls instance: the class service function, parameters and method name.
        self._service: Function | None = None
        self._params: bytes | None = None
        self._method: str | None = None
        self._cls: Cls | None = None
        self._local_obj: Any = None
        self._checked_target: Target | None = None
        self._web_urls: dict[str, str] = {}  # "" for a function, the method name for a Cls method
        if raw_f is not None:
            self.__doc__ = raw_f.__doc__
            self.__name__ = getattr(raw_f, "__name__", tag)
            self.__qualname__ = getattr(raw_f, "__qualname__", tag)
            self.__module__ = getattr(raw_f, "__module__", "")

    def __repr__(self) -> str:
        return f"Function({self._tag!r}{', ' + self._object_id if self._object_id else ''})"

    # --- identity ------------------------------------------------------------------------

    @property
    def object_id(self) -> str:
        if self._service is not None:
            return self._service.object_id
        if self._object_id is None:
            raise ExecutionError(f"{self._name} is not hydrated yet; call it first or use .hydrate()")
        return self._object_id

    @property
    def _name(self) -> str:
        if self._method is not None and self._cls is not None:
            return f"{self._cls._tag}.{self._method}"
        return self._tag

    @property
    def tag(self) -> str:
        return self._tag

    @property
    def is_generator(self) -> bool:
        return self._is_generator

    @property
    def app(self) -> App | None:
        return self._app

    def get_raw_f(self) -> Callable[..., Any]:
        """The undecorated Python function."""
        if self._raw_f is None:
            raise InvalidError(f"{self._name} was looked up by name; its code isn't available locally")
        return self._raw_f

    def _set_hydrated(self, function_id: str, definition: dict[str, Any] | None) -> None:
        self._object_id = function_id
        self._definition = definition
        if definition is not None:
            self._is_generator = bool(definition.get("is_generator", self._is_generator))

    def _reset_hydration(self) -> None:
        self._object_id = None
        self._definition = None

    # --- hydration -----------------------------------------------------------------------

    @blocking
    async def hydrate(self, client: Client | None = None) -> Function:
        """Resolve this handle's id now (normally it happens on first use)."""
        await self._hydrate()
        return self

    async def _hydrate(self) -> None:
        if self._service is not None:
            await self._service._hydrate()
            return
        if self._object_id is not None:
            return
        if self._hydrate_lock is None:
            self._hydrate_lock = asyncio.Lock()
        async with self._hydrate_lock:
            if self._object_id is not None:
                return
            if self._from_name is not None:
                client = Client.from_env()
                app_name, tag, env, version = self._from_name
                params: dict[str, Any] = {"app_name": app_name, "tag": tag, "environment": config.environment_name(env)}
                if version is not None:
                    params["version"] = version
                got = await client.call("function.get", params)
                self._set_hydrated(got["function_id"], got.get("definition"))
                self._web_urls = dict(got.get("web_urls") or {})
            elif self._variant_of is not None:
                base = self._variant_of
                await base._hydrate()
                if base._definition is None:
                    raise ExecutionError(f"the definition of {base._name} is unknown; can't make a variant of it")
                definition = merge_options(base._definition, self._overrides)
                # A variant is a function of its own (its own pool): it gets a tag of its own.
                digest = hashlib.sha256(repr(sorted(self._overrides.items())).encode()).hexdigest()[:10]
                definition["tag"] = f"{base._tag}[{digest}]"
                client = Client.from_env()
                app_id = base._app.app_id if base._app is not None else None
                got = await client.call("function.create", {"app_id": app_id or "", "definition": definition})
                self._set_hydrated(got["function_id"], definition)
            elif config.in_container():
                from ._container_layout import function_id_for

                self._set_hydrated(await function_id_for(Client.from_env(), self._tag), None)
            else:
                raise ExecutionError(
                    f"Function {self._name!r} is not running: call it inside `with app.run():`, from "
                    f"`skylift run`, or deploy the app and use Function.from_name(app_name, {self._tag!r}).")

    def _web_config(self) -> dict[str, Any] | None:
        """The web endpoint settings of this function or method, if it is one."""
        owner = self._service or self
        if self._method is not None:
            meta = (owner._options.get("methods") or (owner._definition or {}).get("methods") or {})
            web = (meta.get(self._method) or {}).get("web")
        else:
            web = self._options.get("web") or (self._definition or {}).get("web")
        return dict(web) if web else None

    def _check_no_web(self) -> None:
        if self._web_config() is not None:
            raise InvalidError(f"{self._name} is a web endpoint; it can't be called with .remote(), .map() or "
                               f".spawn(). Send an HTTP request to its URL ({self._name}.get_web_url()) instead")

    async def _target(self) -> Target:
        self._check_no_web()
        await self._hydrate()
        self._check_no_web()
        if self._method is not None and self._cls is not None:
            self._is_generator = self._cls._method_names().get(self._method, self._is_generator)
            if self._cls._user_cls is None and self._service is not None:
                self._params = _with_declared_defaults(self._service._definition, self._params)
        self._checked_target = Target(self.object_id, self._name, self._params, self._method)
        return self._checked_target

    # --- calls ---------------------------------------------------------------------------

    @property
    def remote(self) -> _Remote:
        """Call the function remotely and return its result (or raise its exception).

        `f.remote(x)` blocks; `await f.remote.aio(x)` awaits."""
        return _Remote(self)

    async def _remote(self, *args: Any, **kwargs: Any) -> Any:
        _invocation.check_not_generator(self._is_generator, self._name, "remote")
        target = await self._target()
        _invocation.check_not_generator(self._is_generator, self._name, "remote")
        return await _invocation.remote(Client.from_env(), target, args, kwargs)

    def _ready_target(self) -> Target | None:
        """The call target when it's known without any I/O (hydrated, checked), else None."""
        owner = self._service or self
        target = self._checked_target
        if target is None or owner._object_id != target.function_id or self._is_generator:
            return None
        return target

    @iterating
    async def remote_gen(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Call a generator function remotely; items stream back as they are yielded."""
        target = await self._target()
        _invocation.check_generator(self._is_generator, self._name)
        async for item in _invocation.remote_gen(Client.from_env(), target, args, kwargs):
            yield item

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in this process (for a Cls method, after its @enter hooks)."""
        if self._cls is not None and self._method is not None:
            obj = self._cls._local_instance(self._params_dict)
            return getattr(obj, self._method)(*args, **kwargs)
        return self.get_raw_f()(*args, **kwargs)

    @iterating_batches
    async def map(self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None,
                  order_outputs: bool = True, return_exceptions: bool = False,
                  wrap_returned_exceptions: bool = True) -> AsyncIterator[Any]:
        """Run the function over the zipped iterables in parallel; yield results in input order."""
        _invocation.check_not_generator(self._is_generator, self._name, "map")
        target = await self._target()
        _invocation.check_not_generator(self._is_generator, self._name, "map")
        inputs = zip(*input_iterators, strict=False)
        client = Client.from_env()

        def batches(arrived: Callable[[int], None] | None) -> AsyncIterator[list[Any]]:
            return _invocation.map_outputs(client, target, inputs, kwargs or {}, order_outputs=order_outputs,
                                           return_exceptions=return_exceptions, arrived=arrived)

        async for values in _output.track_map(f"{self._name}.map", _known_length(*input_iterators), batches,
                                              _runner_count(target)):
            yield values

    @iterating_batches
    async def starmap(self, input_iterator: Iterable[tuple[Any, ...]], *, kwargs: dict[str, Any] | None = None,
                      order_outputs: bool = True, return_exceptions: bool = False,
                      wrap_returned_exceptions: bool = True) -> AsyncIterator[Any]:
        """Like map, with each item a tuple of positional arguments."""
        _invocation.check_not_generator(self._is_generator, self._name, "starmap")
        target = await self._target()
        client = Client.from_env()

        def batches(arrived: Callable[[int], None] | None) -> AsyncIterator[list[Any]]:
            return _invocation.map_outputs(client, target, (tuple(a) for a in input_iterator), kwargs or {},
                                           order_outputs=order_outputs, return_exceptions=return_exceptions,
                                           arrived=arrived)

        async for values in _output.track_map(f"{self._name}.starmap", _known_length(input_iterator), batches,
                                              _runner_count(target)):
            yield values

    @blocking
    async def for_each(self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None,
                       ignore_exceptions: bool = False) -> None:
        """Run the function over the inputs for their side effects, discarding results."""
        target = await self._target()
        inputs = zip(*input_iterators, strict=False)
        client = Client.from_env()

        def batches(arrived: Callable[[int], None] | None) -> AsyncIterator[list[Any]]:
            return _invocation.map_outputs(client, target, inputs, kwargs or {}, order_outputs=False,
                                           return_exceptions=ignore_exceptions, arrived=arrived)

        async for _ in _output.track_map(f"{self._name}.for_each", _known_length(*input_iterators), batches,
                                         _runner_count(target)):
            pass

    @blocking
    async def spawn(self, *args: Any, **kwargs: Any) -> FunctionCall:
        """Start the function without waiting; the call survives this process. Returns a FunctionCall."""
        _invocation.check_not_generator(self._is_generator, self._name, "spawn")
        target = await self._target()
        _invocation.check_not_generator(self._is_generator, self._name, "spawn")
        return FunctionCall(await _invocation.spawn(Client.from_env(), target, args, kwargs), self._name)

    @blocking
    async def spawn_map(self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None) -> None:
        """Submit many inputs without waiting for them (fire and forget)."""
        _invocation.check_not_generator(self._is_generator, self._name, "spawn_map")
        target = await self._target()
        await _invocation.spawn_map(Client.from_env(), target, zip(*input_iterators, strict=False), kwargs or {})

    # --- lookup, variants and autoscaling ------------------------------------------------------

    @classmethod
    def from_name(cls, app_name: str, name: str, *, namespace: Any = None, environment_name: str | None = None,
                  version: int | None = None, client: Client | None = None) -> Function:
        """A handle to a function of a deployed app; hydrated lazily on first use."""
        if "." in name:
            raise InvalidError(f"Function.from_name({app_name!r}, {name!r}): methods of classes are looked up with "
                               f"Cls.from_name({app_name!r}, {name.split('.')[0]!r})")
        fn = cls(None, name)
        fn._from_name = (app_name, name, environment_name, version)
        return fn

    def with_options(self, **options: Any) -> Function:
        """A variant with other resources or scaling; each variant is its own container pool."""
        from ._options import validate_overrides

        variant = Function(self._raw_f, self._tag, app=self._app, options=self._options,
                           is_generator=self._is_generator)
        variant._variant_of = self._variant_of or self
        variant._overrides = {**self._overrides, **validate_overrides(options, name=self._name)}
        return variant

    def with_concurrency(self, *, max_inputs: int, target_inputs: int | None = None) -> Function:
        return self.with_options(concurrency={"max_inputs": max_inputs, "target_inputs": target_inputs})

    def with_batching(self, *, max_batch_size: int, wait_ms: int) -> Function:
        return self.with_options(batching={"max_batch_size": max_batch_size, "wait_ms": wait_ms})

    @blocking
    async def update_autoscaler(self, *, min_containers: int | None = None, max_containers: int | None = None,
                                buffer_containers: int | None = None, scaledown_window: int | None = None) -> None:
        """Change this function's autoscaling until the next deploy."""
        from ._resources import validate_autoscaler

        params = validate_autoscaler(min_containers=min_containers, max_containers=max_containers,
                                     buffer_containers=buffer_containers, scaledown_window=scaledown_window,
                                     partial=True)
        await self._hydrate()
        await Client.from_env().call("function.update_autoscaler", {"function_id": self.object_id, **params})

    @blocking
    async def keep_warm(self, warm_pool_size: int) -> None:
        import warnings

        warnings.warn("Function.keep_warm() is deprecated; use update_autoscaler(min_containers=...)",
                      DeprecationWarning, stacklevel=3)
        await self.update_autoscaler.aio(min_containers=warm_pool_size)

    @classmethod
    def from_id(cls, function_id: str, *, client: Client | None = None) -> Function:
        """A handle to a function by its `fu-` id (looked up now)."""
        from ._introspection import function_from_id

        fn: Function = run_sync(function_from_id(cls, function_id))
        return fn

    @blocking
    async def info(self, *, refresh: bool = False) -> Any:
        """`modal.types.FunctionInfo`: this function's resources, timeouts, mounts and web endpoints."""
        from ._introspection import function_info_of

        return await function_info_of(self)

    @property
    def logs(self) -> Any:
        """This function's log lines: `.fetch(since=...)`, `.tail(n)`, `.stream()` (`modal.types.LogEntry`)."""
        from ._introspection import function_logs

        return function_logs(self)

    @blocking
    async def experimental_spawn_map(self, *input_iterators: Iterable[Any], kwargs: dict[str, Any] | None = None
                                     ) -> FunctionCall:
        """Like `spawn_map`, returning the FunctionCall of the inputs (`.get()` is not for maps; use `.iter()`)."""
        _invocation.check_not_generator(self._is_generator, self._name, "spawn_map")
        target = await self._target()
        call_id = await _invocation.spawn_map(Client.from_env(), target, zip(*input_iterators, strict=False),
                                              kwargs or {})
        return FunctionCall(call_id, self._name)

    @blocking
    async def get_current_stats(self) -> FunctionStats:
        """Backlog and runner counts of this function's pool."""
        await self._hydrate()
        got = await Client.from_env().call("function.stats", {"function_id": self.object_id})
        return FunctionStats(**{k: int(got.get(k, 0)) for k in
                                ("backlog", "num_total_runners", "num_running_inputs", "input_headroom")})

    @property
    def get_web_url(self) -> _GetWebUrl:
        """The URL of a web endpoint function (None for other functions): `f.get_web_url()`, or
        `await f.get_web_url.aio()`. Known once the app runs (for `Function.from_name`, after a lookup)."""
        return _GetWebUrl(self)

    @property
    def web_url(self) -> str | None:
        return self.get_web_url()

    @property
    def _params_dict(self) -> dict[str, Any]:
        from ._serialization import decode_params

        return decode_params(self._params)


class _Remote:
    __slots__ = ("_fn",)

    def __init__(self, fn: Function) -> None:
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target = self._fn._ready_target()
        if target is not None and not on_loop_thread():
            return _invocation.remote_blocking(Client.from_env(), target, args, kwargs)
        return run_sync(self._fn._remote(*args, **kwargs))

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        return await run_async(self._fn._remote(*args, **kwargs))


class _GetWebUrl:
    __slots__ = ("_fn",)

    def __init__(self, fn: Function) -> None:
        self._fn = fn

    def _needs_lookup(self) -> tuple[Function, str, bool]:
        owner = self._fn._service or self._fn
        key = self._fn._method or ""
        return owner, key, key not in owner._web_urls and owner._from_name is not None and owner._object_id is None

    def __call__(self) -> str | None:
        owner, key, lookup = self._needs_lookup()
        if lookup:
            owner.hydrate()
        return owner._web_urls.get(key)

    async def aio(self) -> str | None:
        owner, key, lookup = self._needs_lookup()
        if lookup:
            await owner.hydrate.aio()
        return owner._web_urls.get(key)


class FunctionStats:
    def __init__(self, backlog: int, num_total_runners: int, num_running_inputs: int = 0,
                 input_headroom: int = 0) -> None:
        self.backlog = backlog
        self.num_total_runners = num_total_runners
        self.num_running_inputs = num_running_inputs
        self.input_headroom = input_headroom

    def __repr__(self) -> str:
        return (f"FunctionStats(backlog={self.backlog}, num_total_runners={self.num_total_runners}, "
                f"num_running_inputs={self.num_running_inputs})")


def _known_length(*iterables: Iterable[Any]) -> int | None:
    """How many inputs a map has, when its iterables know their length (the progress bar's total)."""
    lengths = [len(it) for it in iterables if isinstance(it, Sized)]
    return min(lengths) if iterables and len(lengths) == len(iterables) else None


def _runner_count(target: Target) -> Callable[[], Awaitable[int]]:
    """Asks how many containers the function has, for a map's progress bar (polled only on a terminal)."""
    async def count() -> int:
        got = await Client.from_env().call("function.stats", {"function_id": target.function_id})
        return int(got.get("num_total_runners", 0))
    return count


class FunctionCall:
    """A handle to a spawned call; its result is kept for 7 days."""

    def __init__(self, call_id: str, name: str = "function") -> None:
        self._object_id = call_id
        self._name = name

    @property
    def object_id(self) -> str:
        return self._object_id

    @blocking
    async def hydrate(self, client: Client | None = None) -> FunctionCall:
        """Check that the call exists (NotFoundError if its results expired or it never did)."""
        await Client.from_env().call("call.info", {"call_id": self.object_id})
        return self

    @iterating
    async def iter(self, *, start: int = 0, end: int | None = None) -> AsyncIterator[Any]:
        """The results of the call's inputs in index order (`experimental_spawn_map`), `[start, end)`."""
        from ._introspection import iter_call

        async for value in iter_call(self, start, end):
            yield value

    def __repr__(self) -> str:
        return f"FunctionCall({self.object_id!r})"

    @blocking
    async def get(self, timeout: float | None = None) -> Any:
        """Wait for the result; `timeout=0` polls. Raises TimeoutError if it isn't ready in time."""
        return await _invocation.get_output(Client.from_env(), self.object_id, timeout, self._name)

    @blocking
    async def cancel(self, terminate_containers: bool = False) -> None:
        """Cancel the call: pending inputs never run; running ones are interrupted."""
        await Client.from_env().call("call.cancel", {"call_id": self.object_id,
                                                     "terminate_containers": terminate_containers})

    @blocking
    async def num_inputs(self) -> int:
        got = await Client.from_env().call("call.info", {"call_id": self.object_id})
        return int(got["num_inputs"])

    @local_classmethod
    def from_id(cls: type[FunctionCall], function_call_id: str,  # type: ignore[misc]
                client: Client | None = None) -> FunctionCall:
        if not function_call_id.startswith("fc-"):
            raise InvalidError(f"{function_call_id!r} is not a function call id (they start with 'fc-')")
        return cls(function_call_id)

    @blocking_classmethod
    async def gather(cls, *function_calls: FunctionCall) -> list[Any]:
        """Wait for several calls; return their results in order (raises the first failure)."""
        client = Client.from_env()
        return list(await asyncio.gather(*(_invocation.get_output(client, fc.object_id, None, fc._name)
                                           for fc in function_calls)))


def _with_declared_defaults(definition: dict[str, Any] | None, params: bytes | None) -> bytes | None:
    """`Cls.from_name(...)(**some)`: the parameters not given take the class's `modal.parameter(default=...)`
    values (known from its definition when every parameter has one), so `Cls.from_name(...)()` is the
    same parameter set, and container pool, as `Cls()` where the class is defined."""
    from ._serialization import decode_params, encode_params

    defaults = (definition or {}).get("default_params")
    if not defaults:
        return params
    return encode_params({**decode_params(defaults), **decode_params(params)})


def merge_options(definition: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A variant's definition: the base with each overridden field replaced (not extended)."""
    merged = dict(definition)
    for key, value in overrides.items():
        if key in ("cpu", "memory", "gpu", "ephemeral_disk", "cpu_limit", "memory_limit"):
            merged["resources"] = {**merged.get("resources", {}), key: value}
        elif key in ("min_containers", "max_containers", "buffer_containers", "scaledown_window"):
            merged["autoscaler"] = {**merged.get("autoscaler", {}), key: value}
        else:
            merged[key] = value
    return merged


def is_async_function(f: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f)
