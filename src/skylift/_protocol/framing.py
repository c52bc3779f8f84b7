"""Length-prefixed msgpack frames: the byte format every skylift process speaks.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of msgpack. One
frame carries one message (a dict). msgpack keeps `bytes` as bytes, so pickled payloads travel
without base64, and its C extension encodes a small message in about a microsecond.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

# Payloads up to Modal's documented 100 MB cap travel inline; the frame adds headroom for the
# envelope. A peer that announces more is dropped before anything is allocated.
MAX_FRAME_BYTES = 128 * 1024 * 1024

_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The peer sent something that is not a valid frame; the connection can't be trusted."""


def encode(message: dict[str, Any]) -> bytes:
    body: bytes = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"message of {len(body)} bytes exceeds the {MAX_FRAME_BYTES}-byte frame limit")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError(f"frame holds {type(message).__name__}, expected a map")
    return message


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any] | None:
    """Read one message; None at a clean end of stream.

    A frame announcing more than `max_bytes` is refused from its header, before its body is read
    (a server passes a small limit until the peer has authenticated)."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("connection closed inside a frame header") from None
        return None
    (length,) = _HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(f"peer announced a {length}-byte frame; the limit is {max_bytes}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("connection closed inside a frame") from None
    return decode(body)
