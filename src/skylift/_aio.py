"""Methods with a blocking form and an `.aio` form, from one async implementation.

    class Function:
        @blocking
        async def remote(self, *args, **kwargs): ...

    f.remote(1)            # blocks
    await f.remote.aio(1)  # awaits, from any event loop
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

from ._client import iter_async, iter_sync, run_async, run_sync

R = TypeVar("R")


class _BoundBlocking(Generic[R]):
    __slots__ = ("_fn", "_obj")

    def __init__(self, fn: Callable[..., Coroutine[Any, Any, R]], obj: Any) -> None:
        self._fn = fn
        self._obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return run_sync(self._fn(self._obj, *args, **kwargs))

    async def aio(self, *args: Any, **kwargs: Any) -> R:
        return await run_async(self._fn(self._obj, *args, **kwargs))


class blocking(Generic[R]):
    def __init__(self, fn: Callable[..., Coroutine[Any, Any, R]]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, obj: Any, objtype: type | None = None) -> _BoundBlocking[R]:
        return _BoundBlocking(self._fn, obj)


class _BoundIterating(Generic[R]):
    __slots__ = ("_fn", "_obj")

    def __init__(self, fn: Callable[..., AsyncIterator[R]], obj: Any) -> None:
        self._fn = fn
        self._obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return iter_sync(self._fn(self._obj, *args, **kwargs))

    def aio(self, *args: Any, **kwargs: Any) -> AsyncIterator[R]:
        return iter_async(self._fn(self._obj, *args, **kwargs))


class iterating(Generic[R]):
    """Like `blocking`, for async generators: the blocking form returns a plain iterator."""

    def __init__(self, fn: Callable[..., AsyncIterator[R]]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, obj: Any, objtype: type | None = None) -> _BoundIterating[R]:
        return _BoundIterating(self._fn, obj)


class _BoundBatched(Generic[R]):
    __slots__ = ("_fn", "_obj")

    def __init__(self, fn: Callable[..., AsyncIterator[list[R]]], obj: Any) -> None:
        self._fn = fn
        self._obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[R]:
        for batch in iter_sync(self._fn(self._obj, *args, **kwargs)):
            yield from batch

    async def aio(self, *args: Any, **kwargs: Any) -> AsyncIterator[R]:
        async for batch in iter_async(self._fn(self._obj, *args, **kwargs)):
            for item in batch:
                yield item


class iterating_batches(Generic[R]):
    """For async generators that yield lists: callers get the items one by one, while the hop
    between threads happens once per list (it costs tens of microseconds; .map yields thousands)."""

    def __init__(self, fn: Callable[..., AsyncIterator[list[R]]]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, obj: Any, objtype: type | None = None) -> _BoundBatched[R]:
        return _BoundBatched(self._fn, obj)


class blocking_classmethod(Generic[R]):
    def __init__(self, fn: Callable[..., Coroutine[Any, Any, R]]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, objtype: type | None = None) -> _BoundBlocking[R]:
        return _BoundBlocking(self._fn, objtype)


class _BoundContext(Generic[R]):
    __slots__ = ("_fn", "_obj")

    def __init__(self, fn: Callable[..., R], obj: Any) -> None:
        self._fn = fn
        self._obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self._fn(self._obj, *args, **kwargs)

    def aio(self, *args: Any, **kwargs: Any) -> R:
        """The same context manager, for `async with` (it supports both forms)."""
        return self._fn(self._obj, *args, **kwargs)


class context_method(Generic[R]):
    """A method returning a context manager usable with `with` and `async with`: `x.m()` and
    `x.m.aio()` (Modal's spelling for the async form) give the same object."""

    def __init__(self, fn: Callable[..., R]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, obj: Any, objtype: type | None = None) -> _BoundContext[R]:
        return _BoundContext(self._fn, obj)


class context_classmethod(context_method[R]):
    """`context_method` for class methods (`Dict.ephemeral()` / `Dict.ephemeral.aio()`)."""

    def __get__(self, obj: Any, objtype: type | None = None) -> _BoundContext[R]:
        return _BoundContext(self._fn, objtype)


class _BoundSync(Generic[R]):
    __slots__ = ("_fn", "_obj")

    def __init__(self, fn: Callable[..., R], obj: Any) -> None:
        self._fn = fn
        self._obj = obj

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self._fn(self._obj, *args, **kwargs)

    async def aio(self, *args: Any, **kwargs: Any) -> R:
        return self._fn(self._obj, *args, **kwargs)


class local_method(Generic[R]):
    """A method that does no I/O, with Modal's `.aio` form too: both run it directly (no hop to
    the SDK's loop, so it works anywhere, on that loop included)."""

    def __init__(self, fn: Callable[..., R]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, obj: Any, objtype: type | None = None) -> _BoundSync[R]:
        return _BoundSync(self._fn, obj)


class local_classmethod(local_method[R]):
    def __get__(self, obj: Any, objtype: type | None = None) -> _BoundSync[R]:
        return _BoundSync(self._fn, objtype)
