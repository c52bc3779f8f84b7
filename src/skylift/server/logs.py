"""App logs: stored with their app and function, streamed to `app.logs` long-polls.

Workers ship container output in batches (`worker.logs`); the control plane adds its own
"system" lines (timeouts, retries, crashes) so a user sees why an input failed next to their
output. Each batch is one store transaction, off the event loop.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .._protocol.rpc import Session
from .auth import Routes
from .longpoll import Deadline, Signal
from .params import Params, invalid
from .store import LogRecord

if TYPE_CHECKING:
    from .control_plane import ControlPlane

log = logging.getLogger("skylift.server")

STREAMS = ("stdout", "stderr", "system")
MAX_ENTRIES = 10_000


class LogHub:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._signals: dict[str, Signal] = {}
        self._versions: dict[str, int] = {}

    def routes(self) -> Routes:
        return {"app.logs": self.read, "worker.logs": self.ingest}

    def system(self, app_id: str, task_id: str, function_tag: str, text: str) -> None:
        """A line from the control plane itself, shown with the app's logs."""
        log.info("[%s %s] %s", app_id, function_tag, text)
        if app_id:
            self.cp.dispatcher.spawn(self.append([LogRecord(0, app_id, task_id, function_tag, "system", text,
                                                            time.time())]))

    def version(self, app_id: str) -> int:
        """Grows with every batch appended to the app's log (pair it with `wait_after`)."""
        return self._versions.get(app_id, 0)

    async def wait_after(self, app_id: str, version: int, timeout: float) -> None:
        """Wait until the app's log has moved past `version` (or `timeout`, or `wake`)."""
        if self._versions.get(app_id, 0) == version and timeout > 0:
            await self._signals.setdefault(app_id, Signal()).wait(timeout)

    def wake(self, app_id: str) -> None:
        """Answer waiting readers now (the app stopped: no more lines will come)."""
        signal = self._signals.get(app_id)
        if signal is not None:
            signal.notify()

    async def append(self, records: list[LogRecord]) -> None:
        if not records:
            return
        await self.cp.db.run(self.cp.db.store.append_logs, records)
        for app_id in {r.app_id for r in records}:
            self._versions[app_id] = self._versions.get(app_id, 0) + 1
            signal = self._signals.get(app_id)
            if signal is not None:
                signal.notify()

    async def ingest(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("worker.logs", raw)
        records = []
        for n, entry in enumerate(p.items("entries")):
            if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
                raise invalid("worker.logs", f"entries[{n}] must be a map with 'task_id', 'stream' and 'text'")
            task_id = str(entry.get("task_id") or "")
            origin = self.cp.tasks.origin(task_id)
            if origin is None:
                continue  # a container from before a restart; nobody can ask for its app's logs
            stream = entry.get("stream")
            ts = entry.get("ts")
            records.append(LogRecord(0, origin.app_id, task_id, origin.function_tag,
                                     stream if stream in STREAMS else "stdout", entry["text"],
                                     float(ts) if isinstance(ts, (int, float)) else time.time()))
        await self.append(records)
        return {}

    async def read(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("app.logs", raw)
        app_id = p.text("app_id")
        after = p.integer("after_seq", 0)
        deadline = Deadline(p.timeout())
        limit = min(p.integer("limit", 1000, minimum=1), MAX_ENTRIES)
        app = await self.cp.catalog.app(app_id)
        while True:
            version = self._versions.get(app_id, 0)
            rows = await self.cp.db.run(self.cp.db.store.read_logs, app_id, after, limit)
            if rows or not app.running or deadline.remaining() <= 0:
                break
            if self._versions.get(app_id, 0) != version:
                continue  # something arrived while we read
            signal = self._signals.setdefault(app_id, Signal())
            await signal.wait(deadline.remaining())
        return {
            "entries": [{"seq": r.seq, "ts": r.ts, "task_id": r.task_id, "function_tag": r.function_tag,
                         "stream": r.stream, "text": r.text} for r in rows],
            "next_seq": rows[-1].seq if rows else after,
            "app_state": app.state.value,
        }
