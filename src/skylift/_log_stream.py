"""Following an app's log to this terminal, up to its last line (the client half of the log barrier).

The control plane answers `app.logs` with `done: true` once nothing more can come: the app is
stopped, each of its containers has exited and its workers sent every line first (server/api/logs.py).
`skylift run`, `serve`, `deploy --stream-logs` and `app logs -f` all follow the log with this one
loop, so each prints every line a container wrote, `@exit` hooks included, in order per container.

The wait for the end is bounded by the logs timeout: `SKYLIFT_LOGS_TIMEOUT` (or Modal's
`MODAL_LOGS_TIMEOUT`), in seconds, default 10 as in Modal. A container whose `@exit` hook takes
longer is not waited for; the command says that lines may be missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

from . import _output
from ._client import Client
from .exception import InvalidError

TIMEOUT_VARIABLES = ("SKYLIFT_LOGS_TIMEOUT", "MODAL_LOGS_TIMEOUT")
DEFAULT_TIMEOUT = 10.0
# One long-poll; the control plane answers at once when a line or the end arrives.
POLL_SECONDS = 10.0
RETRY_SECONDS = 0.5
PAGE = 10_000
# A detached app keeps running, so its log has no end to wait for: take what arrives until it is quiet.
DETACHED_QUIET = 0.15
DETACHED_MAX = 2.0

Entry = dict[str, Any]


def logs_timeout() -> float:
    """How long a command waits for an app's last log lines after it stops the app."""
    for name in TIMEOUT_VARIABLES:
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise InvalidError(f"{name}={raw!r} is not a number of seconds; e.g. {name}=30") from None
        if value < 0:
            raise InvalidError(f"{name}={raw!r} must be 0 or more seconds")
        return value
    return DEFAULT_TIMEOUT


def print_entry(entry: Entry) -> None:
    _output.container_log(str(entry.get("stream") or "stdout"), str(entry.get("text", "")))


class LogStream:
    """Prints an app's log lines from `after_seq` on, until the log's end or `close()`."""

    def __init__(self, client: Client, app_id: str, *, after_seq: int = 0,
                 emit: Callable[[Entry], None] = print_entry) -> None:
        self.client = client
        self.app_id = app_id
        self.seq = after_seq
        self.emit = emit
        self.ended = asyncio.Event()
        self._last_line = 0.0

    async def skip_to_end(self) -> None:
        """Start after the lines already stored (a deploy shows only what its containers write next)."""
        while True:
            got = await self.client.call("app.logs", {"app_id": self.app_id, "after_seq": self.seq, "timeout": 0,
                                                      "limit": PAGE})
            self.seq = int(got.get("next_seq", self.seq))
            if len(got["entries"]) < PAGE:
                return

    async def read(self, timeout: float, limit: int | None = None) -> list[Entry]:
        """One page of lines after the last one read; marks the end when the control plane says so."""
        params: dict[str, Any] = {"app_id": self.app_id, "after_seq": self.seq, "timeout": timeout}
        if limit is not None:
            params["limit"] = limit
        got = await self.client.call("app.logs", params)
        entries: list[Entry] = got["entries"]
        self.seq = int(got.get("next_seq", self.seq))
        if got.get("done"):
            self.ended.set()
        return entries

    async def run(self) -> None:
        """Print lines as they come, until the end of the log (cancel it to stop earlier)."""
        loop = asyncio.get_running_loop()
        while not self.ended.is_set():
            try:
                entries = await self.read(POLL_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(RETRY_SECONDS)  # a control plane restarting: the seq resumes the log
                continue
            for entry in entries:
                self.emit(entry)
            if entries:
                self._last_line = loop.time()

    async def wait_end(self, timeout: float) -> bool:
        """Wait (while `run` prints) for the log's end; False if `timeout` seconds passed first."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ended.wait(), timeout)
        return self.ended.is_set()

    async def wait_quiet(self, quiet: float = DETACHED_QUIET, most: float = DETACHED_MAX) -> None:
        """For a log that doesn't end: wait until no line came for `quiet` seconds (at most `most`)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._last_line = max(self._last_line, start)
        while loop.time() - start < most and loop.time() - self._last_line < quiet:
            await asyncio.sleep(0.03)


def warn_incomplete(app_label: str, timeout: float) -> None:
    _output.warn(f"Some log lines of {app_label} may be missing: its containers were still stopping after "
                 f"{timeout:g}s. Set {TIMEOUT_VARIABLES[0]} to wait longer.")


__all__ = ["LogStream", "logs_timeout", "print_entry", "warn_incomplete"]
