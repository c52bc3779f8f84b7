"""One `RpcClient` that survives a control-plane restart.

Containers and worker agents hold one long-lived connection each. When the control plane
restarts, the connection drops; this wrapper reconnects with exponential backoff, says `hello`
again and re-sends the call that was cut. Every method a container or worker calls is safe to
re-send: outputs for an attempt that already has one are ignored by the control plane, and
inputs leased on a lost `get_inputs` answer come back after their lease expires.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._protocol.rpc import ConnectionLost, RpcClient

OnConnect = Callable[[RpcClient], Awaitable[None]]


class ReconnectingClient:
    """`call()` like `RpcClient.call`, reconnecting on a lost connection.

    `give_up_after` bounds how long the peer may stay unreachable (None: forever); after that the
    pending call raises `ConnectionLost`. `on_connect` runs on every new connection before any
    queued call is re-sent (a worker re-registers there).
    """

    def __init__(
        self,
        url: str,
        hello: dict[str, Any],
        *,
        give_up_after: float | None = 120.0,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        on_connect: OnConnect | None = None,
    ) -> None:
        self.url = url
        self.hello_params = hello
        self.give_up_after = give_up_after
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.on_connect = on_connect
        self.connects = 0
        self._client: RpcClient | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._client.closed

    def current(self) -> RpcClient | None:
        """The connection if it is up now (for `RpcClient.send`), else None."""
        client = self._client
        return client if client is not None and not client.closed else None

    async def connect(self) -> RpcClient:
        """The current connection, (re)connecting first if there is none."""
        client = self._client
        if client is not None and not client.closed:
            return client
        async with self._lock:
            client = self._client
            if client is not None and not client.closed:
                return client
            self._client = client = await self._dial()
            return client

    async def _dial(self) -> RpcClient:
        backoff = self.initial_backoff
        deadline = None if self.give_up_after is None else time.monotonic() + self.give_up_after
        while True:
            if self._closed:
                raise ConnectionLost("connection closed by this side")
            try:
                client = await RpcClient.connect(self.url, self.hello_params)
                if self.on_connect is not None:
                    try:
                        await self.on_connect(client)
                    except BaseException:
                        await client.close()
                        raise
                self.connects += 1
                return client
            except (OSError, ConnectionLost) as exc:
                if deadline is not None and time.monotonic() + backoff > deadline:
                    raise ConnectionLost(f"control plane at {self.url} unreachable for "
                                         f"{self.give_up_after:.0f} s: {exc}") from exc
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        while True:
            client = await self.connect()
            try:
                return await client.call(method, params)
            except ConnectionLost:
                if self._closed:
                    raise
                # The next connect() dials again; a peer that stays away raises from there. The
                # pause keeps a peer that accepts and then drops every connection from spinning us.
                await asyncio.sleep(self.initial_backoff)

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            await self._client.close()
            self._client = None
