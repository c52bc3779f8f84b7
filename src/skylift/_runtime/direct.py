"""The worker thread's own connection: a warm input's output and the next input, without the loop.

A single-slot container running a sync function used to take every warm call through two thread
hops: the loop read the input and woke the worker thread, the worker thread ran it and woke the
loop, and the loop sent the output. On a small VM each wake-up costs tens to hundreds of
microseconds, a third of a warm `.remote()`. When the worker thread finishes a lone input it now
sends the output itself, over a second, blocking connection (as the SDK's `BlockingRpcClient`
does for `.remote()`), with the container's next poll riding on it; the control plane's answer
(the next input) wakes the thread that runs it. The loop keeps the bookkeeping (leases held,
heartbeats, cancellation, stopping), told after the fact.

Anything unusual (a send that fails, an answer with work the thread can't run itself, a stop)
goes back to the loop's path, which reconnects and re-sends; outputs are idempotent.
"""

from __future__ import annotations

import threading
from typing import Any

from .._protocol.rpc import BlockingRpcClient, ConnectionLost

CONNECT_TIMEOUT = 10.0


class DirectLink:
    """A blocking connection for the worker thread, opened when needed; `interrupt` (from the
    loop, when the container stops) ends a long-poll in progress and retires the link."""

    def __init__(self, url: str, hello: dict[str, Any], poll_seconds: float) -> None:
        self._url = url
        self._hello = hello
        self._timeout = poll_seconds + CONNECT_TIMEOUT
        self._rpc: BlockingRpcClient | None = None
        self._lock = threading.Lock()
        self.closed = False

    def call(self, method: str, params: dict[str, Any]) -> Any:
        """Runs in the worker thread. Raises ConnectionLost on any failure (the connection is
        dropped; the next call dials again, so a control-plane restart costs one fallback)."""
        with self._lock:
            if self.closed:
                raise ConnectionLost("the direct link was closed")
            rpc = self._rpc
        try:
            if rpc is None:
                rpc = BlockingRpcClient(self._url, self._hello, timeout=self._timeout)
                with self._lock:
                    if self.closed:
                        rpc.close()
                        raise ConnectionLost("the direct link was closed")
                    self._rpc = rpc
            return rpc.call(method, params)
        except Exception as exc:
            with self._lock:
                if self._rpc is rpc:
                    self._rpc = None
            if rpc is not None:
                rpc.close()
            raise ConnectionLost(f"direct link: {exc!r}") from None

    def interrupt(self) -> None:
        """Retire the link; a call blocked on it returns (with ConnectionLost) at once."""
        with self._lock:
            self.closed = True
            rpc, self._rpc = self._rpc, None
        if rpc is not None:
            rpc.shutdown()
