"""The SDK's connection to the control plane, and the one sync→async bridge.

Everything inside the SDK is async and runs on one background event loop thread; the blocking
API (`f.remote()`) hands a coroutine to that loop and waits. `.aio` variants await the same
coroutine from the caller's loop. Wire errors become `skylift.exception` types here and nowhere
else.

A client that has been connected rides out a control-plane restart: a call cut by a lost
connection is re-sent (with its idempotency key, docs/exactly-once.md) once the control plane is
back, for up to `retry_window()` seconds; an embedded platform that died is started again.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from . import _local_server, config
from ._protocol import api
from ._protocol.rpc import BlockingRpcClient, ConnectionLost, ErrorCode, RpcClient, RpcError
from .exception import (
    AlreadyExistsError,
    AuthError,
    ConnectionError,
    ControlPlaneUnavailableError,
    Error,
    InvalidError,
    NotFoundError,
    ResourceExhaustedError,
    TimeoutError,
    _PlatformInternalError,
    _RequestCancelledError,
)

T = TypeVar("T")

_ERRORS: dict[str, type[Error]] = {
    ErrorCode.INVALID: InvalidError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.AUTH: AuthError,
    ErrorCode.CONFLICT: AlreadyExistsError,
    ErrorCode.TIMEOUT: TimeoutError,
    ErrorCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    ErrorCode.UNAVAILABLE: ConnectionError,
    ErrorCode.CANCELLED: _RequestCancelledError,  # Modal's ServiceError, and ExecutionError as before
    ErrorCode.INTERNAL: _PlatformInternalError,  # Modal's InternalError, and ExecutionError as before
}


def map_error(exc: RpcError) -> Error:
    return _ERRORS.get(exc.code, Error)(exc.message)


ENV_RETRY_WINDOW = "SKYLIFT_RETRY_WINDOW"
REVIVE_AFTER = 5.0  # seconds an embedded platform stays down before the client starts it again


def retry_window() -> float:
    """How long a call waits for a lost control plane to come back (SKYLIFT_RETRY_WINDOW, seconds)."""
    raw = os.environ.get(ENV_RETRY_WINDOW, "")
    try:
        return max(0.0, float(raw)) if raw else api.RETRY_WINDOW_SECONDS
    except ValueError:
        raise InvalidError(f"{ENV_RETRY_WINDOW}={raw!r} is not a number of seconds") from None


class _Unavailable(Exception):
    """The control plane answered UNAVAILABLE: it did nothing, the request may be sent again."""


class _Outage:
    """Time since a call lost the control plane, and the pause before its next try."""

    def __init__(self, url: str, method: str) -> None:
        self.url = url
        self.method = method
        self.window = retry_window()
        self.since = time.monotonic()
        self.pause = 0.05

    def next_pause(self, cause: BaseException) -> float:
        """Seconds to wait before the next try; raises once the window is spent."""
        left = self.since + self.window - time.monotonic()
        if left <= 0:
            raise ControlPlaneUnavailableError(
                f"lost the skylift control plane at {self.url} during {self.method} and it did not come back "
                f"within {self.window:g} s ({cause}); check it with `skylift server status` (the window is "
                f"{ENV_RETRY_WINDOW})") from None
        pause, self.pause = min(self.pause, left), min(self.pause * 2, 1.0)
        return pause


# ---------------------------------------------------------------------------------------------
# The background loop


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="skylift-client", daemon=True)
        self.thread.start()


_loop_thread: _LoopThread | None = None
_loop_lock = threading.Lock()


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop_thread
    if _loop_thread is None or not _loop_thread.thread.is_alive():
        with _loop_lock:
            if _loop_thread is None or not _loop_thread.thread.is_alive():
                _loop_thread = _LoopThread()
    return _loop_thread.loop


def on_loop_thread() -> bool:
    return _loop_thread is not None and threading.current_thread() is _loop_thread.thread


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run an SDK coroutine to completion from blocking code."""
    loop = _get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise InvalidError("a blocking skylift call was made on skylift's own event loop; use the .aio variant")
    future: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise


async def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run an SDK coroutine from any event loop (the `.aio` variants)."""
    loop = _get_loop()
    if asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def iter_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an SDK async iterator from blocking code."""
    try:
        while True:
            try:
                yield run_sync(agen.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            try:
                run_sync(aclose())
            except Exception:
                pass


async def iter_async(agen: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        while True:
            try:
                item: T = await run_async(agen.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            try:
                await run_async(aclose())
            except Exception:
                pass


def spawn_background(coro: Coroutine[Any, Any, Any]) -> Future[Any]:
    return asyncio.run_coroutine_threadsafe(coro, _get_loop())


# ---------------------------------------------------------------------------------------------
# The client


class Client:
    """A connection to a control plane. Use `Client.from_env()`; it is shared per process."""

    def __init__(self, url: str, token: str, role: str = api.ROLE_CLIENT, task_id: str | None = None,
                 home: str | None = None) -> None:
        self.url = url
        self.token = token
        self.role = role
        self.task_id = task_id
        self.home = home
        self._rpc: RpcClient | None = None
        self._connect_lock: asyncio.Lock | None = None
        self.server_version = ""
        self._local = threading.local()
        self._blocking: list[BlockingRpcClient] = []
        self._ever_connected = False  # only a client that was connected waits for a lost control plane
        self._closed = False  # closed by this side: nothing waits for the control plane any more

    @classmethod
    def from_env(cls) -> Client:
        global _default_client
        client = _default_client
        if client is None:
            with _client_lock:
                if _default_client is None:
                    _default_client = _make_default_client()
                client = _default_client
        return client

    def _hello(self) -> dict[str, Any]:
        hello: dict[str, Any] = {"token": self.token, "role": self.role, "version": config.version()}
        if self.task_id:
            hello["task_id"] = self.task_id
        return hello

    def _unreachable(self, exc: BaseException) -> ConnectionError:
        return ConnectionError(f"can't reach the skylift control plane at {self.url}: {exc}. "
                               "Is it running? (`skylift server status`)")

    async def _connect(self) -> RpcClient:
        """The connection, dialled if there is none; raises OSError/ConnectionLost if it can't be."""
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._rpc is not None and not self._rpc.closed:
                return self._rpc
            try:
                self._rpc = await RpcClient.connect(self.url, self._hello())
            except RpcError as exc:
                raise map_error(exc) from None
            self._ever_connected = True
            self.server_version = str(self._rpc.hello.get("server_version", ""))
            return self._rpc

    async def call(self, method: str, params: dict[str, Any] | None = None, *, retry: bool = True) -> Any:
        """Call a control-plane method.

        With `retry=True` (calls that are safe to send twice: reads, and calls with an idempotency
        key) a call cut by a lost connection is re-sent once the control plane is back, for up to
        `retry_window()` seconds; then it raises `ControlPlaneUnavailableError`.
        """
        outage: _Outage | None = None
        while True:
            try:
                rpc = self._rpc
                if rpc is None or rpc.closed:
                    rpc = await self._connect()
                return await rpc.call(method, params)
            except RpcError as exc:
                if not (retry and exc.code == ErrorCode.UNAVAILABLE):
                    raise map_error(exc) from None
                # The control plane stored nothing (its store failed): the same request again.
                outage = outage or _Outage(self.url, method)
                await asyncio.sleep(outage.next_pause(exc))
            except (OSError, ConnectionLost) as exc:
                if not self._ever_connected:
                    raise self._unreachable(exc) from None
                if not retry or self._closed:
                    raise ConnectionError(f"lost the connection to the control plane during {method}: {exc}") from None
                outage = outage or _Outage(self.url, method)
                await asyncio.sleep(outage.next_pause(exc))
                await asyncio.to_thread(self._revive, outage.since)

    def _revive(self, down_since: float) -> None:
        """Start the embedded platform again if it died and nobody restarts it; a server we don't own is waited for.

        Whoever killed it gets `REVIVE_AFTER` seconds to start it themselves (a test harness, an
        operator, with their own options); one that holds the home, even while starting, is left be.
        """
        if self.home is None or self.role != api.ROLE_CLIENT or os.environ.get(api.ENV_SERVER_URL):
            return
        home = Path(self.home)
        info = _local_server.read_info(home)
        if info is None:
            if time.monotonic() - down_since < REVIVE_AFTER or _local_server.holds_home(home):
                return
            try:
                info = _local_server.start(home)  # says so on stderr when it starts one
            except ConnectionError as exc:
                print(f"skylift: {exc}", file=sys.stderr)  # tried again until the retry window is spent
                return
        self.url, self.token = info.unix_url, info.token

    def blocking_call(self, method: str, params: dict[str, Any]) -> Any:
        """A call from a plain thread over that thread's own blocking connection (no event loop).

        Re-sent across a lost connection like `call(retry=True)`: only keyed or read-only methods
        come here.
        """
        outage: _Outage | None = None
        while True:
            try:
                return self._blocking_once(method, params)
            except _Unavailable as exc:
                outage = outage or _Outage(self.url, method)
                time.sleep(outage.next_pause(exc))
            except (OSError, ConnectionLost) as exc:
                if not self._ever_connected or self._closed:
                    raise self._unreachable(exc) from None
                outage = outage or _Outage(self.url, method)
                time.sleep(outage.next_pause(exc))
                self._revive(outage.since)

    def _blocking_once(self, method: str, params: dict[str, Any]) -> Any:
        rpc: BlockingRpcClient | None = getattr(self._local, "rpc", None)
        if rpc is None or rpc.closed:
            try:
                rpc = BlockingRpcClient(self.url, self._hello())
            except RpcError as exc:
                raise map_error(exc) from None
            self._ever_connected = True
            self._local.rpc = rpc
            self._blocking.append(rpc)
        try:
            return rpc.call(method, params)
        except RpcError as exc:
            if exc.code == ErrorCode.UNAVAILABLE:
                raise _Unavailable(exc.message) from None
            raise map_error(exc) from None
        except ConnectionLost:
            raise
        except BaseException:
            rpc.close()  # interrupted mid-call (Ctrl-C): its answer would arrive out of turn
            raise

    async def close(self) -> None:
        self._closed = True
        if self._rpc is not None:
            await self._rpc.close()
            self._rpc = None
        for rpc in self._blocking:
            rpc.close()
        self._blocking.clear()


_default_client: Client | None = None
_client_lock = threading.Lock()


def _make_default_client() -> Client:
    url = os.environ.get(api.ENV_SERVER_URL)
    if config.in_container():
        token = os.environ.get(api.ENV_TASK_TOKEN, "")
        if not url:
            raise ConnectionError("running in a container without SKYLIFT_SERVER_URL")
        return Client(url, token, role=api.ROLE_CONTAINER, task_id=os.environ.get(api.ENV_TASK_ID))
    if url:
        token = os.environ.get("SKYLIFT_TOKEN", "")
        if not token:
            raise AuthError("SKYLIFT_SERVER_URL is set but SKYLIFT_TOKEN is not; set it to the server's token "
                            "(the `token` file in the server's SKYLIFT_HOME)")
        return Client(url, token)
    home = config.home()
    info = _local_server.read_info(home)
    _local_server.check_token(home, os.environ.get("SKYLIFT_TOKEN", ""), info)
    if info is not None and info.version != config.version():
        import sys

        print(f"skylift: the local platform runs version {info.version}; restarting it with {config.version()}",
              file=sys.stderr)
        _local_server.stop(home)
        info = None
    if info is None:
        info = _local_server.start(home)
    return Client(info.unix_url, info.token, home=str(home))


def reset_default_client() -> None:
    """Forget the shared client (tests that switch SKYLIFT_HOME use this)."""
    global _default_client
    client, _default_client = _default_client, None
    if client is not None and _loop_thread is not None:
        try:
            run_sync(client.close())
        except Exception:
            pass


def _close_at_exit() -> None:
    if _default_client is not None and _loop_thread is not None and _loop_thread.thread.is_alive():
        fut = asyncio.run_coroutine_threadsafe(_default_client.close(), _loop_thread.loop)
        try:
            fut.result(timeout=1)
        except Exception:
            pass


atexit.register(_close_at_exit)


def gather_sync(*aws: Awaitable[Any]) -> list[Any]:
    async def _g() -> list[Any]:
        return list(await asyncio.gather(*aws))

    return run_sync(_g())
