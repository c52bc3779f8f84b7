"""The SDK's connection to the control plane, and the one sync→async bridge.

Everything inside the SDK is async and runs on one background event loop thread; the blocking
API (`f.remote()`) hands a coroutine to that loop and waits. `.aio` variants await the same
coroutine from the caller's loop. Wire errors become `skylift.exception` types here and nowhere
else.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from . import _local_server, config
from ._protocol import api
from ._protocol.rpc import BlockingRpcClient, ConnectionLost, ErrorCode, RpcClient, RpcError
from .exception import (
    AlreadyExistsError,
    AuthError,
    ConnectionError,
    Error,
    ExecutionError,
    InvalidError,
    NotFoundError,
    ResourceExhaustedError,
    TimeoutError,
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
    ErrorCode.CANCELLED: ExecutionError,
    ErrorCode.INTERNAL: ExecutionError,
}


def map_error(exc: RpcError) -> Error:
    return _ERRORS.get(exc.code, Error)(exc.message)


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

    async def _connect(self) -> RpcClient:
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._rpc is not None and not self._rpc.closed:
                return self._rpc
            hello: dict[str, Any] = {"token": self.token, "role": self.role, "version": config.version()}
            if self.task_id:
                hello["task_id"] = self.task_id
            try:
                self._rpc = await RpcClient.connect(self.url, hello)
            except RpcError as exc:
                raise map_error(exc) from None
            except (OSError, ConnectionLost) as exc:
                raise ConnectionError(
                    f"can't reach the skylift control plane at {self.url}: {exc}. "
                    "Is it running? (`skylift server status`)") from None
            self.server_version = str(self._rpc.hello.get("server_version", ""))
            return self._rpc

    async def call(self, method: str, params: dict[str, Any] | None = None, *, retry: bool = True) -> Any:
        """Call a control-plane method. Idempotent calls (`retry=True`) survive one reconnect."""
        rpc = self._rpc
        if rpc is None or rpc.closed:
            rpc = await self._connect()
        try:
            return await rpc.call(method, params)
        except RpcError as exc:
            raise map_error(exc) from None
        except ConnectionLost as exc:
            if not retry:
                raise ConnectionError(f"lost the connection to the control plane during {method}: {exc}") from None
        rpc = await self._connect()
        try:
            return await rpc.call(method, params)
        except RpcError as exc:
            raise map_error(exc) from None
        except ConnectionLost as exc:
            raise ConnectionError(f"lost the connection to the control plane during {method}: {exc}") from None

    def blocking_call(self, method: str, params: dict[str, Any]) -> Any:
        """A call from a plain thread over that thread's own blocking connection (no event loop)."""
        rpc: BlockingRpcClient | None = getattr(self._local, "rpc", None)
        if rpc is None or rpc.closed:
            hello: dict[str, Any] = {"token": self.token, "role": self.role, "version": config.version()}
            if self.task_id:
                hello["task_id"] = self.task_id
            try:
                rpc = BlockingRpcClient(self.url, hello)
            except RpcError as exc:
                raise map_error(exc) from None
            except (OSError, ConnectionLost) as exc:
                raise ConnectionError(f"can't reach the skylift control plane at {self.url}: {exc}") from None
            self._local.rpc = rpc
            self._blocking.append(rpc)
        try:
            return rpc.call(method, params)
        except RpcError as exc:
            raise map_error(exc) from None
        except ConnectionLost as exc:
            raise ConnectionError(f"lost the connection to the control plane during {method}: {exc}") from None
        except BaseException:
            rpc.close()  # interrupted mid-call (Ctrl-C): its answer would arrive out of turn
            raise

    async def close(self) -> None:
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
