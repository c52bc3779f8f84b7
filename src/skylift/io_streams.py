"""`modal.io_streams`: a sandbox process's stdout/stderr (`StreamReader`) and stdin (`StreamWriter`).

Example (Modal's documented form, unchanged):
    >>> sb = modal.Sandbox.create("bash", "-c", "cat", app=app)   # doctest: +SKIP
    >>> sb.stdin.write(b"hello\\n"); sb.stdin.write_eof(); sb.stdin.drain()
    >>> sb.stdout.read()
    'hello\\n'

Both directions carry byte offsets (`sandbox.read`, `sandbox.write_stdin`), so a call re-sent
after a lost connection neither repeats nor loses bytes (docs/sandboxes.md).
"""

from __future__ import annotations

import codecs
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar

from ._aio import blocking
from ._client import Client, iter_async, iter_sync
from ._protocol import api
from .exception import ResourceExhaustedError

T = TypeVar("T", str, bytes)

MAX_BUFFER_SIZE = 2 * 1024 * 1024  # Modal's: write() refuses more than this before a drain()


class StreamReader(Generic[T]):
    """Reads one output stream of a sandbox or of a process `exec` started, from where it left off."""

    def __init__(self, client: Client, sandbox_id: str, process_id: str, stream: str, *, text: bool = True,
                 by_line: bool = False, discarded: bool = False) -> None:
        self._client = client
        self._sandbox_id = sandbox_id
        self._process_id = process_id
        self._stream = stream
        self._text = text
        self._by_line = by_line
        self._offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._line = b""
        self.eof = discarded  # DEVNULL: nothing to read

    @property
    def file_descriptor(self) -> int:
        """1 for stdout, 2 for stderr (Modal's)."""
        return 2 if self._stream == "stderr" else 1

    def _out(self, data: bytes, final: bool = False) -> T:
        if self._text:
            return self._decoder.decode(data, final)  # type: ignore[return-value]
        return data  # type: ignore[return-value]

    async def _chunk(self) -> bytes | None:
        """The next bytes (waiting for them); None at EOF."""
        while not self.eof:
            got = await self._client.call("sandbox.read", {
                "sandbox_id": self._sandbox_id, "process_id": self._process_id, "stream": self._stream,
                "offset": self._offset, "timeout": api.MAX_POLL_SECONDS})
            self._offset = int(got["next_offset"])
            data = bytes(got.get("data") or b"")
            if got.get("eof"):
                self.eof = True
            if data:
                return data
        return None

    @blocking
    async def read(self) -> T:
        """Everything from here to the end of the stream (waits for the process to close it)."""
        parts = [self._line]
        self._line = b""
        while (data := await self._chunk()) is not None:
            parts.append(data)
        return self._out(b"".join(parts), final=True)

    async def _items(self) -> AsyncIterator[T]:
        while True:
            data = await self._chunk()
            if data is None:
                break
            if not self._by_line:
                out = self._out(data)
                if out:
                    yield out
                continue
            self._line += data
            while b"\n" in self._line:
                line, self._line = self._line.split(b"\n", 1)
                yield self._out(line + b"\n")
        if self._line:
            line, self._line = self._line, b""
            yield self._out(line, final=True)

    def __iter__(self) -> Iterator[T]:
        return iter_sync(self._items())

    def __aiter__(self) -> AsyncIterator[T]:
        return iter_async(self._items())

    def close(self) -> None:
        """Stop reading (the process's output is still kept for other readers)."""
        self.eof = True

    async def aclose(self) -> None:
        self.close()


class StreamWriter:
    """A process's stdin: `write` buffers here, `drain` sends; `write_eof` closes it after the drain."""

    def __init__(self, client: Client, sandbox_id: str, process_id: str) -> None:
        self._client = client
        self._sandbox_id = sandbox_id
        self._process_id = process_id
        self._buffer = bytearray()
        self._offset = 0
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Queue `data` (str is UTF-8 encoded); nothing is sent before `drain()`."""
        if self._closed:
            raise ValueError("Stdin is closed. Cannot write to it.")
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__}")
        if len(self._buffer) + len(data) > MAX_BUFFER_SIZE:
            raise BufferError("Buffer size exceed limit. Call drain to flush the buffer.")
        self._buffer.extend(data)

    def write_eof(self) -> None:
        """Close stdin once the buffered data is drained (the process then sees EOF)."""
        self._closed = True

    @blocking
    async def drain(self) -> None:
        """Send what `write` buffered (and the EOF of `write_eof`); waits while the process's stdin is full."""
        data = bytes(self._buffer)
        self._buffer.clear()
        while True:  # like a full pipe: wait while the process doesn't read its stdin (re-sends add nothing)
            try:
                got = await self._client.call("sandbox.write_stdin", {
                    "sandbox_id": self._sandbox_id, "process_id": self._process_id, "offset": self._offset,
                    "data": data, "eof": self._closed, "timeout": api.MAX_POLL_SECONDS})
                break
            except ResourceExhaustedError:
                continue
        self._offset = max(self._offset + len(data), int(got.get("next_offset") or 0))


async def print_stream(reader: StreamReader[Any]) -> None:
    """`StreamType.STDOUT`: copy a stream to this program's stdout as it comes."""
    async for item in reader._items():
        sys.stdout.write(item if isinstance(item, str) else item.decode("utf-8", "replace"))
        sys.stdout.flush()
