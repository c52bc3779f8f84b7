"""`modal.Queue`: a FIFO queue with partitions, shared by every app in an environment.

Example:
    >>> import skylift as modal
    >>> with modal.Queue.ephemeral() as q:          # doctest: +SKIP
    ...     q.put("a"); q.put_many([1, 2], partition="p")
    ...     q.get(), q.get_many(5, partition="p")
    ('a', [1, 2])

Raises the standard library's `queue.Empty` and `queue.Full`, like Modal. Unlike Modal's, a
skylift Queue is durable: every put is on disk before it returns and survives a restart of the
control plane. A blocked `get` is woken by the next put (a long-poll, not a polling loop).
"""

from __future__ import annotations

import queue as _stdlib_queue
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from ._aio import blocking, iterating
from ._object import ObjectManager, _Object
from ._protocol import api
from ._serialization import deserialize, serialize
from .exception import InvalidError, RequestSizeError, ResourceExhaustedError

MAX_ITEM_BYTES = 1024 * 1024
MAX_PARTITION_KEY_BYTES = 64
DEFAULT_PARTITION_TTL = 24 * 3600


def _check_partition(partition: str | None) -> str | None:
    if partition is None:
        return None
    if not isinstance(partition, str):
        raise InvalidError(f"a Queue partition key is a str, got {type(partition).__name__}")
    size = len(partition.encode())
    if size == 0 or size > MAX_PARTITION_KEY_BYTES:
        raise InvalidError(f"a Queue partition key must be 1 to {MAX_PARTITION_KEY_BYTES} bytes, got {size}; "
                           "use partition=None for the default partition")
    return partition


def _encode(value: Any) -> bytes:
    data = serialize(value, what="Queue item")
    if len(data) > MAX_ITEM_BYTES:
        raise RequestSizeError(f"a Queue item is at most {MAX_ITEM_BYTES >> 20} MiB pickled; this one is "
                               f"{len(data) / 2**20:.1f} MiB. Put large data in a Volume and queue its path")
    return data


class _Waiter:
    """Long-polls of at most MAX_POLL_SECONDS until an overall timeout (None: forever)."""

    def __init__(self, block: bool, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            raise InvalidError("timeout must be >= 0")
        self.end = None if not block or timeout is None else time.monotonic() + timeout
        self.block = block

    def next_poll(self) -> float:
        if not self.block:
            return 0.0
        if self.end is None:
            return api.MAX_POLL_SECONDS
        return max(0.0, min(self.end - time.monotonic(), api.MAX_POLL_SECONDS))

    def expired(self) -> bool:
        return not self.block or (self.end is not None and time.monotonic() >= self.end)


class Queue(_Object):
    """A distributed FIFO queue (Modal's `modal.Queue`)."""

    _kind: ClassVar[str] = "queue"
    _title: ClassVar[str] = "Queue"
    objects: ClassVar[ObjectManager]

    @classmethod
    def from_id(cls, queue_id: str, client: Any = None) -> Queue:  # type: ignore[override]
        """A handle to a Queue by its id (e.g. one passed along from another program)."""
        return cls._from_id(queue_id)

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None, create_if_missing: bool = False,
                  client: Any = None) -> Queue:
        """A handle to the named Queue (looked up on first use)."""
        return cls._by_name(name, environment_name, create_if_missing)

    async def _put(self, values: list[Any], block: bool, timeout: float | None, partition: str | None,
                   partition_ttl: int) -> None:
        partition = _check_partition(partition)
        if not isinstance(partition_ttl, int) or partition_ttl < 1:
            raise InvalidError("partition_ttl must be a positive number of seconds")
        data = [_encode(v) for v in values]
        waiter = _Waiter(block, timeout)
        while True:
            try:
                await self._call("queue.put", {"values": data, "partition": partition,
                                               "partition_ttl": partition_ttl, "timeout": waiter.next_poll()})
                return
            except ResourceExhaustedError as exc:
                if waiter.expired():
                    raise _stdlib_queue.Full(str(exc)) from None

    @blocking
    async def put(self, v: Any, block: bool = True, timeout: float | None = None, *, partition: str | None = None,
                  partition_ttl: int = DEFAULT_PARTITION_TTL) -> None:
        """Add `v`; when the partition is full, wait (up to `timeout`) for room, else raise queue.Full."""
        await self._put([v], block, timeout, partition, partition_ttl)

    @blocking
    async def put_many(self, vs: list[Any], block: bool = True, timeout: float | None = None, *,
                       partition: str | None = None, partition_ttl: int = DEFAULT_PARTITION_TTL) -> None:
        """Add every item of `vs`, in order, atomically."""
        values = list(vs)
        if values:
            await self._put(values, block, timeout, partition, partition_ttl)

    async def _get(self, n: int, block: bool, timeout: float | None, partition: str | None) -> list[Any] | None:
        partition = _check_partition(partition)
        waiter = _Waiter(block, timeout)
        while True:
            got = await self._call("queue.get", {"n": n, "partition": partition, "timeout": waiter.next_poll()})
            if got["values"]:
                return [deserialize(v, what="Queue item") for v in got["values"]]
            if waiter.expired():
                return None

    @blocking
    async def get(self, block: bool = True, timeout: float | None = None, *, partition: str | None = None) -> Any:
        """Remove and return the next item. Blocks (up to `timeout`, then queue.Empty); with
        `block=False` returns None at once when the queue is empty."""
        got = await self._get(1, block, timeout, partition)
        if got is None:
            if not block:
                return None
            raise _stdlib_queue.Empty()
        return got[0]

    @blocking
    async def get_many(self, n_values: int, block: bool = True, timeout: float | None = None, *,
                       partition: str | None = None) -> list[Any]:
        """Remove and return up to `n_values` items, waiting (up to `timeout`) for at least one."""
        if not isinstance(n_values, int) or n_values < 1:
            raise InvalidError("n_values must be a positive integer")
        got = await self._get(n_values, block, timeout, partition)
        if got is None:
            if not block:
                return []
            raise _stdlib_queue.Empty()
        return got

    @blocking
    async def len(self, *, partition: str | None = None, total: bool = False) -> int:
        """Items in a partition (the default one unless given), or in every partition with `total`."""
        if partition is not None and total:
            raise InvalidError("give partition= or total=True, not both")
        got = await self._call("queue.len", {"partition": _check_partition(partition), "total": total})
        return int(got["len"])

    @blocking
    async def clear(self, *, partition: str | None = None, all: bool = False) -> None:
        """Remove every item of a partition (the default one unless given), or of all with `all`."""
        if partition is not None and all:
            raise InvalidError("give partition= or all=True, not both")
        await self._call("queue.clear", {"partition": _check_partition(partition), "all": all})

    async def _peek(self, partition: str | None, n: int, item_poll_timeout: float) -> AsyncIterator[Any]:
        partition = _check_partition(partition)
        after = 0
        while True:
            got = await self._call("queue.peek", {"partition": partition, "after": after, "n": n,
                                                  "timeout": min(item_poll_timeout, api.MAX_POLL_SECONDS)})
            if not got["items"]:
                return
            for seq, data in got["items"]:
                after = seq
                yield deserialize(data, what="Queue item")

    @iterating
    async def iterate(self, *, partition: str | None = None, item_poll_timeout: float = 0.0) -> AsyncIterator[Any]:
        """Every item, oldest first, without removing any; after the last one, waits up to
        `item_poll_timeout` seconds for another before stopping."""
        async for item in self._peek(partition, 100, item_poll_timeout):
            yield item


Queue.objects = ObjectManager(Queue)
