"""Bounded everything before auth on the RPC port (issue 9, finding 2; docs/security.md).

Before: a peer could announce a 128 MiB frame before `hello` and the server buffered it (4 stalled
connections took the control plane from 45 to 525 MiB), idle connections stayed open for ever and
nothing capped their number.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import struct

import pytest

from conftest import FAST
from skylift._protocol import framing
from skylift._protocol.rpc import ConnectionLost, RpcError

HEADER = struct.Struct(">I")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _raw(h):  # type: ignore[no-untyped-def]
    return await asyncio.open_unix_connection(h.cp.unix_url.removeprefix("unix://"))


async def _closed_by_server(reader: asyncio.StreamReader, within: float = 20.0) -> bool:
    """Whether the server closes the connection (anything it says first is read and dropped)."""
    async def drain() -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 16):
                pass

    try:
        await asyncio.wait_for(drain(), within)
    except asyncio.TimeoutError:
        return False
    return True


async def test_stalled_connections_announcing_huge_frames_cost_no_memory(platform):
    # A long hello deadline: what closes them here is the header check, not the deadline.
    async with platform(dataclasses.replace(FAST, hello_timeout=120.0)) as h:
        gc.collect()
        before = rss_mib()
        peers = []
        for _ in range(4):
            reader, writer = await _raw(h)
            # A 128 MiB frame announced, 8 MiB of it sent, then nothing: the peer stalls.
            writer.write(HEADER.pack(framing.MAX_FRAME_BYTES) + b"\0" * (8 << 20))
            peers.append((reader, writer))
        for reader, _ in peers:
            assert await _closed_by_server(reader), "a connection announcing a huge frame before hello stayed open"
        for _, writer in peers:
            writer.close()
        gc.collect()
        grown = rss_mib() - before
        print(f"RSS {before:.0f} MiB before, {before + grown:.0f} MiB after 4 stalled 128 MiB frames")
        assert grown < 64, f"the control plane grew by {grown:.0f} MiB"
        # A hello frame larger than the pre-auth limit is refused the same way, from its header.
        reader, writer = await _raw(h)
        writer.write(HEADER.pack(100 * 1024))
        assert await _closed_by_server(reader)
        writer.close()
        # After hello the normal limit holds: a 2 MiB value travels.
        client = await h.client()
        queue = (await client.call("object.get", {"kind": "dict", "name": "big", "environment": "main",
                                                  "create_if_missing": True}))["object_id"]
        await client.call("dict.put", {"dict_id": queue, "items": [[b"k", b"v" * (2 << 20)]]})


async def test_connections_without_hello_are_closed_after_the_deadline(platform):
    async with platform(dataclasses.replace(FAST, hello_timeout=0.5)) as h:
        peers = [await _raw(h) for _ in range(20)]
        for reader, _ in peers:
            assert await _closed_by_server(reader), "an idle connection without hello stayed open"
        for _, writer in peers:
            writer.close()
        # A half-sent hello is no different.
        reader, writer = await _raw(h)
        writer.write(HEADER.pack(200) + b"\x80")
        assert await _closed_by_server(reader)
        writer.close()
        await h.client()  # and proper clients still connect


async def test_connection_caps_refuse_extras_with_one_log_line(platform, caplog):
    caplog.set_level(logging.WARNING, logger="skylift.rpc")
    settings = dataclasses.replace(FAST, hello_timeout=60.0, rpc_max_unauthenticated=3)
    async with platform(settings) as h:
        idle = [await _raw(h) for _ in range(3)]
        extras = [await _raw(h) for _ in range(5)]
        for reader, _ in extras:
            assert await _closed_by_server(reader, within=10.0), "a connection over the cap was kept"
        for reader, _ in idle:  # the first three are still waiting for their hello
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.2)
        refusals = [r for r in caplog.records if "refusing new RPC connections" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
        assert "have not sent hello" in refusals[0].getMessage()
        for _, writer in idle + extras:
            writer.close()
        await asyncio.sleep(0.1)
        await h.client()  # the slots are free again

    async with platform(dataclasses.replace(FAST, rpc_max_connections=2)) as h:
        first = await h.client()
        await h.client()
        with pytest.raises((ConnectionLost, RpcError, ConnectionError)):
            await h.client()
        await first.close()
        await asyncio.sleep(0.1)
        await h.client()
        assert any("connections are open (the limit is 2" in r.getMessage() for r in caplog.records)
