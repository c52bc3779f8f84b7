"""The `queue.*` methods: durable FIFO queues with partitions, and long-polls that wake at once.

    queue.put {queue_id, partition?, values: [bytes], partition_ttl?, timeout?} -> {}
    queue.get {queue_id, partition?, n, timeout} -> {values: [bytes]}
    queue.peek {queue_id, partition?, after: int, n, timeout} -> {items: [[seq, bytes]]}
    queue.len {queue_id, partition?, total?} -> {len}
    queue.clear {queue_id, partition?, all?} -> {}

Unlike Modal's, items are committed to SQLite before `put` answers and survive a restart. Modal's
limits hold: items up to 1 MiB, partition keys of 1 to 64 bytes (the default partition has none),
5,000 items per partition (`put` waits up to `timeout` for room, then fails with
`resource_exhausted`: queue.Full in the SDK). A partition is cleared `partition_ttl` seconds (default
a day) after its last put. A `get` or `peek` that finds nothing parks on the partition's signal and
is woken by the next put, so a blocked consumer sees an item within a round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..._protocol.rpc import ErrorCode, RpcError
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..longpoll import Deadline, Signal
from ..params import Params, invalid
from .object_store import ObjectRecord, QueueFull
from .objects import Objects

MAX_ITEM_BYTES = 1024 * 1024
MAX_PARTITION_KEY_BYTES = 64
MAX_PARTITION_ITEMS = 5000
DEFAULT_PARTITION_TTL = 24 * 3600
MAX_GET = 5000


def check_partition(method: str, partition: str | None) -> str:
    """The stored partition key: "" is the default partition."""
    if partition is None:
        return ""
    size = len(partition.encode())
    if size == 0 or size > MAX_PARTITION_KEY_BYTES:
        raise invalid(method, f"a partition key must be 1 to {MAX_PARTITION_KEY_BYTES} bytes, got {size}; "
                              "omit it (None) for the default partition")
    return partition


def check_items(method: str, values: list[Any]) -> list[bytes]:
    for i, value in enumerate(values):
        if not isinstance(value, bytes):
            raise invalid(method, f"values[{i}] must be bytes")
        if len(value) > MAX_ITEM_BYTES:
            raise invalid(method, f"a queue item is at most {MAX_ITEM_BYTES >> 20} MiB pickled; item {i} is "
                                  f"{len(value) / 2**20:.1f} MiB. Put large data in a Volume and queue its path")
    return values


@dataclass
class _Watch:
    items: Signal = field(default_factory=Signal)  # something was put
    space: Signal = field(default_factory=Signal)  # something was taken or cleared
    puts: int = 0  # bumped with `items`: a put between a look and a wait is not missed
    takes: int = 0
    users: int = 0


class QueueApi:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.store = objects.store
        self._watches: dict[tuple[str, str], _Watch] = {}
        objects.on_delete["queue"] = self._deleted

    def routes(self) -> Routes:
        return {
            "queue.put": self.put,
            "queue.get": self.get,
            "queue.peek": self.peek,
            "queue.len": self.length,
            "queue.clear": self.clear,
        }

    def _deleted(self, record: ObjectRecord) -> None:
        for (queue_id, _), watch in list(self._watches.items()):
            if queue_id == record.object_id:
                watch.items.notify()
                watch.space.notify()

    async def _queue(self, p: Params) -> str:
        return (await self.objects.resolve(p.method, p.text("queue_id"), "queue")).object_id

    def _enter(self, key: tuple[str, str]) -> _Watch:
        watch = self._watches.setdefault(key, _Watch())
        watch.users += 1
        return watch

    def _leave(self, key: tuple[str, str], watch: _Watch) -> None:
        watch.users -= 1
        if watch.users == 0 and self._watches.get(key) is watch:
            del self._watches[key]

    def _notify(self, key: tuple[str, str], which: str) -> None:
        watch = self._watches.get(key)
        if watch is None:
            return
        if which == "items":
            watch.puts += 1
            watch.items.notify()
        else:
            watch.takes += 1
            watch.space.notify()

    async def put(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("queue.put", raw)
        queue_id = await self._queue(p)
        partition = check_partition(p.method, p.opt_text("partition"))
        values = check_items(p.method, p.items("values"))
        ttl = p.integer("partition_ttl", DEFAULT_PARTITION_TTL, minimum=1)
        if len(values) > MAX_PARTITION_ITEMS:
            raise RpcError(ErrorCode.RESOURCE_EXHAUSTED, f"{len(values)} items can't fit in one partition "
                                                         f"(at most {MAX_PARTITION_ITEMS})")
        deadline = Deadline(p.timeout())
        key = (queue_id, partition)
        watch = self._enter(key)
        try:
            while True:
                seen = watch.takes
                now = time.time()
                try:
                    await self.objects.run(self.store.queue_put, queue_id, partition, values, MAX_PARTITION_ITEMS,
                                           now + ttl, now)
                    break
                except QueueFull:
                    if watch.takes != seen:
                        continue
                    if deadline.remaining() <= 0 or not await watch.space.wait(deadline.remaining()):
                        where = f"partition {partition!r}" if partition else "the default partition"
                        raise RpcError(ErrorCode.RESOURCE_EXHAUSTED, f"queue full: {where} holds its maximum of "
                                                                     f"{MAX_PARTITION_ITEMS} items") from None
                    await self._queue(p)  # deleted meanwhile: NotFound
        finally:
            self._leave(key, watch)
        self._notify(key, "items")
        return {}

    async def get(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("queue.get", raw)
        queue_id = await self._queue(p)
        partition = check_partition(p.method, p.opt_text("partition"))
        n = min(p.integer("n", 1, minimum=1), MAX_GET)
        deadline = Deadline(p.timeout())
        key = (queue_id, partition)
        watch = self._enter(key)
        try:
            while True:
                seen = watch.puts
                values = await self.objects.run(self.store.queue_take, queue_id, partition, n, time.time())
                if values:
                    self._notify(key, "space")
                    return {"values": values}
                if watch.puts != seen:
                    continue
                if deadline.remaining() <= 0 or not await watch.items.wait(deadline.remaining()):
                    return {"values": []}
                await self._queue(p)
        finally:
            self._leave(key, watch)

    async def peek(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("queue.peek", raw)
        queue_id = await self._queue(p)
        partition = check_partition(p.method, p.opt_text("partition"))
        n = min(p.integer("n", 1, minimum=1), MAX_GET)
        after = p.integer("after", 0)
        deadline = Deadline(p.timeout())
        key = (queue_id, partition)
        watch = self._enter(key)
        try:
            while True:
                seen = watch.puts
                rows = await self.objects.run(self.store.queue_peek, queue_id, partition, after, n, time.time())
                if rows or deadline.remaining() <= 0:
                    return {"items": [[seq, data] for seq, data in rows]}
                if watch.puts != seen:
                    continue
                if not await watch.items.wait(deadline.remaining()):
                    return {"items": []}
                await self._queue(p)
        finally:
            self._leave(key, watch)

    async def length(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("queue.len", raw)
        queue_id = await self._queue(p)
        partition = None if p.flag("total") else check_partition(p.method, p.opt_text("partition"))
        return {"len": await self.objects.run(self.store.queue_len, queue_id, partition, time.time())}

    async def clear(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("queue.clear", raw)
        queue_id = await self._queue(p)
        everything = p.flag("all")
        if everything and p.opt_text("partition") is not None:
            raise invalid(p.method, "give a partition or all=True, not both")
        partition = None if everything else check_partition(p.method, p.opt_text("partition"))
        await self.objects.run(self.store.queue_clear, queue_id, partition)
        for key in [k for k in self._watches if k[0] == queue_id and (partition is None or k[1] == partition)]:
            self._notify(key, "space")
        return {}
