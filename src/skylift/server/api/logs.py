"""App logs: stored with their app and function, streamed to `app.logs` long-polls.

Workers ship container output in batches (`worker.logs`); the control plane adds its own
"system" lines (timeouts, retries, crashes) so a user sees why an input failed next to their
output. Each batch is one store transaction, off the event loop.

The end of an app's log is a barrier readers can wait for (`app.logs` answers `done: true`): the
app is stopped, every one of its containers has exited, and no batch is still being written. A
worker sends a container's last lines before it reports the exit (`worker/agent.py`), so by then
they are stored, `@exit` hooks' output included; the client drains up to that marker, bounded by
its logs timeout (`skylift/_log_stream.py`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..longpoll import Deadline, Signal
from ..params import Params, invalid
from ..store import LogRecord

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

log = logging.getLogger("skylift.server")

STREAMS = ("stdout", "stderr", "system")
MAX_ENTRIES = 10_000
# A stopped app's readers re-check the end this often even without a wake (a container written off
# without a report from its worker); reports wake them at once.
STOPPED_RECHECK_SECONDS = 0.5


class LogHub:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._signals: dict[str, Signal] = {}
        self._versions: dict[str, int] = {}
        self._writing: dict[str, int] = {}  # app id -> batches not yet stored

    def routes(self) -> Routes:
        return {"app.logs": self.read, "worker.logs": self.ingest}

    def system(self, app_id: str, task_id: str, function_tag: str, text: str) -> None:
        """A line from the control plane itself, shown with the app's logs."""
        log.info("[%s %s] %s", app_id, function_tag, text)
        if app_id:
            self._hold(app_id)  # now, not when the spawned write starts: the app's log isn't done before it
            record = LogRecord(0, app_id, task_id, function_tag, "system", text, time.time())
            self.cp.dispatcher.spawn(self._append_held(app_id, [record]))

    async def _append_held(self, app_id: str, records: list[LogRecord]) -> None:
        try:
            await self.append(records)
        finally:
            self._release(app_id)

    def _hold(self, app_id: str) -> None:
        self._writing[app_id] = self._writing.get(app_id, 0) + 1

    def _release(self, app_id: str) -> None:
        left = self._writing.get(app_id, 0) - 1
        if left > 0:
            self._writing[app_id] = left
        else:
            self._writing.pop(app_id, None)
            self._moved(app_id)

    def finished(self, app_id: str, running: bool) -> bool:
        """No line can still come for this app: it is stopped, its containers have exited (their
        workers send a container's lines before its exit) and nothing is being written."""
        return not running and app_id not in self._writing and not self.cp.tasks.of_app(app_id)

    def task_exited(self, app_id: str) -> None:
        """A container of the app is gone: readers waiting for the end of its log look again."""
        self._moved(app_id)

    def _moved(self, app_id: str) -> None:
        # Counted like a batch, so a reader whose read overlapped this doesn't then sleep through it.
        self._versions[app_id] = self._versions.get(app_id, 0) + 1
        self.wake(app_id)

    def version(self, app_id: str) -> int:
        """Grows with every batch appended to the app's log, and as its end nears (pair it with `wait_after`)."""
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
        apps = {r.app_id for r in records}
        for app_id in apps:
            self._hold(app_id)
        try:
            await self.cp.db.run(self.cp.db.store.append_logs, records)
        finally:
            for app_id in apps:
                self._release(app_id)
        for app_id in apps:
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
            # Judged before the read: if nothing can come any more, what the read returns is the rest.
            finished = self.finished(app_id, app.running)
            rows = await self.cp.db.run(self.cp.db.store.read_logs, app_id, after, limit)
            if rows or finished or deadline.remaining() <= 0:
                break
            if self._versions.get(app_id, 0) != version:
                continue  # something arrived while we read
            signal = self._signals.setdefault(app_id, Signal())
            wait = deadline.remaining()
            await signal.wait(wait if app.running else min(wait, STOPPED_RECHECK_SECONDS))
        return {
            "entries": [{"seq": r.seq, "ts": r.ts, "task_id": r.task_id, "function_tag": r.function_tag,
                         "stream": r.stream, "text": r.text} for r in rows],
            "next_seq": rows[-1].seq if rows else after,
            "app_state": app.state.value,
            "done": finished and len(rows) < limit,
        }
