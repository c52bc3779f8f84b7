"""Moving volume blocks between here and the control plane's blob store, in few round trips.

Uploads ask `blob.missing` first (content already stored anywhere is never sent again), then
send small blocks many per `volume.write_blocks` call and large ones one per `blob.put`.
Downloads fetch many blocks per `volume.read_blocks` call, a few calls in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..exception import ExecutionError

# A block source: its bytes, or a function reading them (large files are not held in memory).
BlockSource = bytes | Callable[[], bytes]

BATCH_BYTES = 16 * 1024 * 1024
BATCH_BLOCKS = 2000
SMALL_BLOCK = 1024 * 1024
IN_FLIGHT = 4


async def _read(source: BlockSource) -> bytes:
    return source if isinstance(source, bytes) else await asyncio.to_thread(source)


def _batches(hashes: list[str], sizes: dict[str, int]) -> list[list[str]]:
    batches: list[list[str]] = []
    current: list[str] = []
    total = 0
    for digest in hashes:
        size = sizes.get(digest, SMALL_BLOCK)
        if current and (total + size > BATCH_BYTES or len(current) >= BATCH_BLOCKS):
            batches.append(current)
            current, total = [], 0
        current.append(digest)
        total += size
    if current:
        batches.append(current)
    return batches


async def upload_blocks(client: Any, blocks: dict[str, BlockSource], sizes: dict[str, int]) -> int:
    """Make sure the blob store holds every block; returns how many were sent."""
    hashes = sorted(blocks)
    missing: list[str] = []
    for start in range(0, len(hashes), 10_000):
        got = await client.call("blob.missing", {"hashes": hashes[start:start + 10_000]})
        missing.extend(got["missing"])
    small = [h for h in missing if sizes.get(h, 0) <= SMALL_BLOCK]
    large = [h for h in missing if sizes.get(h, 0) > SMALL_BLOCK]
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def send_batch(batch: list[str]) -> None:
        async with sem:
            data = [await _read(blocks[h]) for h in batch]
            got = await client.call("volume.write_blocks", {"blocks": data})
            if got["hashes"] != batch:
                changed = next(h for h, g in zip(batch, got["hashes"], strict=False) if h != g)
                raise ExecutionError(f"a file changed while it was being uploaded (block {changed[:12]}…); "
                                     "try again once nothing writes to it")

    async def send_large(digest: str) -> None:
        async with sem:
            data = await _read(blocks[digest])
            if hashlib.sha256(data).hexdigest() != digest:
                raise ExecutionError("a file changed while it was being uploaded; try again once nothing writes to it")
            await client.call("blob.put", {"sha256": digest, "data": data})

    await asyncio.gather(*(send_batch(b) for b in _batches(small, sizes)), *(send_large(h) for h in large))
    return len(missing)


async def download_blocks(client: Any, hashes: list[str], sizes: dict[str, int] | None = None
                          ) -> AsyncIterator[tuple[str, bytes]]:
    """Yield (hash, bytes) for every distinct hash, a batch at a time."""
    unique = list(dict.fromkeys(hashes))
    batches = _batches(unique, sizes or {})
    for start in range(0, len(batches), IN_FLIGHT):
        group = batches[start:start + IN_FLIGHT]
        results = await asyncio.gather(*(_fetch(client, batch) for batch in group))
        for batch, blocks in zip(group, results, strict=True):
            for digest, data in zip(batch, blocks, strict=True):
                yield digest, data


async def _fetch(client: Any, batch: list[str]) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < len(batch):
        got = await client.call("volume.read_blocks", {"hashes": batch[len(out):]})
        if not got["blocks"]:
            raise ExecutionError("the control plane returned no blocks")
        out.extend(got["blocks"])
    return out
