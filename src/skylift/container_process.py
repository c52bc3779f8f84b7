"""`modal.container_process.ContainerProcess`: a process `Sandbox.exec` started.

Example:
    >>> p = sb.exec("python", "-c", "print(6 * 7)")   # doctest: +SKIP
    >>> p.stdout.read(), p.wait()
    ('42\\n', 0)
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._aio import blocking
from ._client import Client
from ._protocol import api
from .exception import InvalidError
from .io_streams import StreamReader, StreamWriter

T = TypeVar("T", str, bytes)


class ContainerProcess(Generic[T]):
    def __init__(self, client: Client, sandbox_id: str, process_id: str, *, text: bool = True, by_line: bool = False,
                 stdout_discarded: bool = False, stderr_discarded: bool = False) -> None:
        self._client = client
        self._sandbox_id = sandbox_id
        self._process_id = process_id
        self._returncode: int | None = None
        self._stdout: StreamReader[T] = StreamReader(client, sandbox_id, process_id, "stdout", text=text,
                                                     by_line=by_line, discarded=stdout_discarded)
        self._stderr: StreamReader[T] = StreamReader(client, sandbox_id, process_id, "stderr", text=text,
                                                     by_line=by_line, discarded=stderr_discarded)
        self._stdin = StreamWriter(client, sandbox_id, process_id)

    def __repr__(self) -> str:
        return f"ContainerProcess({self._process_id})"

    @property
    def object_id(self) -> str:
        return self._process_id

    @property
    def stdout(self) -> StreamReader[T]:
        """The process's stdout."""
        return self._stdout

    @property
    def stderr(self) -> StreamReader[T]:
        """The process's stderr."""
        return self._stderr

    @property
    def stdin(self) -> StreamWriter:
        """The process's stdin."""
        return self._stdin

    @property
    def returncode(self) -> int:
        """The exit code, once `wait()` or `poll()` saw the process end (-1: it ran past its timeout)."""
        if self._returncode is None:
            raise InvalidError("You must call wait() before accessing the returncode. "
                               "To poll for the status of a running process, use poll() instead.")
        return self._returncode

    async def _wait(self, timeout: float) -> int | None:
        got = await self._client.call("sandbox.wait", {"sandbox_id": self._sandbox_id,
                                                       "process_id": self._process_id, "timeout": timeout})
        if got.get("status") != "running":
            code = got.get("returncode")
            self._returncode = int(code) if code is not None else -1
        return self._returncode

    @blocking
    async def poll(self) -> int | None:
        """The exit code if the process has ended, else None."""
        if self._returncode is not None:
            return self._returncode
        return await self._wait(0.0)

    @blocking
    async def wait(self) -> int:
        """Wait for the process to end; returns its exit code."""
        while self._returncode is None:
            await self._wait(api.MAX_POLL_SECONDS)
        return self._returncode
