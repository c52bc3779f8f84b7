"""RFC 6455 framing for the gateway's side of a WebSocket: the handshake key and frames.

The gateway terminates the client's WebSocket and relays whole messages to and from the ASGI app
in the container as `websocket.receive` / `websocket.send` events, so only this much of the
protocol lives here: unmasking client frames, reassembling fragments, answering pings, and
writing unmasked server frames.
"""

from __future__ import annotations

import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA

# Modal caps WebSocket messages at 2 MiB; a bigger one closes the connection with 1009.
MAX_MESSAGE = 2 * 1024 * 1024


class ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


def encode_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def close_frame(code: int = 1000, reason: str = "") -> bytes:
    return encode_frame(CLOSE, struct.pack("!H", code) + reason.encode()[:120])


def _unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    # XOR with the 4-byte mask repeated, as one big integer operation (fast in CPython).
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class FrameParser:
    """Feed bytes from the client; get complete messages back as (opcode, payload)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return out
            fin, opcode, payload = frame
            if opcode >= CLOSE:  # control frames are never fragmented
                if not fin or len(payload) > 125:
                    raise ProtocolError(1002, "bad control frame")
                out.append((opcode, payload))
                continue
            if opcode != CONTINUATION:
                if self._fragments:
                    raise ProtocolError(1002, "a new message started inside a fragmented one")
                self._fragment_opcode = opcode
            elif not self._fragments:
                raise ProtocolError(1002, "continuation frame without a message")
            self._fragments.append(payload)
            self._fragment_size += len(payload)
            if self._fragment_size > MAX_MESSAGE:
                raise ProtocolError(1009, f"message larger than {MAX_MESSAGE} bytes")
            if fin:
                out.append((self._fragment_opcode, b"".join(self._fragments)))
                self._fragments = []
                self._fragment_size = 0

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise ProtocolError(1002, "reserved bits set (no extension was negotiated)")
        if not b1 & 0x80:
            raise ProtocolError(1002, "client frames must be masked")
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,) = struct.unpack_from("!H", buf, 2)
            pos = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buf, 2)
            pos = 10
        if length > MAX_MESSAGE:
            raise ProtocolError(1009, f"frame larger than {MAX_MESSAGE} bytes")
        if len(buf) < pos + 4 + length:
            return None
        mask = bytes(buf[pos:pos + 4])
        payload = _unmask(bytes(buf[pos + 4:pos + 4 + length]), mask)
        del buf[:pos + 4 + length]
        return bool(b0 & 0x80), b0 & 0x0F, payload
