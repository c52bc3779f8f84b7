"""What the gateway and the scheduler persist: proxy-auth tokens and the state of each schedule.

A small `Store`-like protocol beside `store.Store`, run on the same `Database` thread;
`SqliteWebStore` keeps its tables in the same `state.db` through a connection of its own (as
`sqlite_objects` does). Proxy-token secrets are stored as sha256 hashes only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS proxy_tokens (
    token_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (
    function_id TEXT PRIMARY KEY, anchor REAL NOT NULL, last_fire REAL, paused INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0);
"""


@dataclass
class ProxyTokenRecord:
    token_id: str
    secret_hash: str
    created_at: float


@dataclass
class ScheduleRecord:
    function_id: str
    anchor: float  # wall time a Period counts from (the deploy); unused by Cron
    last_fire: float | None  # wall time of the last run started
    paused: bool = False
    version: int = 0  # the app version the anchor belongs to: a redeploy resets a Period


class WebStore(Protocol):
    def close(self) -> None: ...
    def put_proxy_token(self, record: ProxyTokenRecord) -> None: ...
    def list_proxy_tokens(self) -> list[ProxyTokenRecord]: ...
    def delete_proxy_token(self, token_id: str) -> bool: ...
    def list_schedules(self) -> list[ScheduleRecord]: ...
    def put_schedule(self, record: ScheduleRecord) -> None: ...
    def delete_schedule(self, function_id: str) -> None: ...


class SqliteWebStore:
    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def put_proxy_token(self, record: ProxyTokenRecord) -> None:
        self._db.execute("INSERT INTO proxy_tokens (token_id, secret_hash, created_at) VALUES (?, ?, ?)",
                         (record.token_id, record.secret_hash, record.created_at))

    def list_proxy_tokens(self) -> list[ProxyTokenRecord]:
        rows = self._db.execute("SELECT token_id, secret_hash, created_at FROM proxy_tokens ORDER BY created_at")
        return [ProxyTokenRecord(*row) for row in rows.fetchall()]

    def delete_proxy_token(self, token_id: str) -> bool:
        cur = self._db.execute("DELETE FROM proxy_tokens WHERE token_id = ?", (token_id,))
        return cur.rowcount > 0

    def list_schedules(self) -> list[ScheduleRecord]:
        rows = self._db.execute("SELECT function_id, anchor, last_fire, paused, version FROM schedules")
        return [ScheduleRecord(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows.fetchall()]

    def put_schedule(self, record: ScheduleRecord) -> None:
        self._db.execute(
            "INSERT INTO schedules (function_id, anchor, last_fire, paused, version) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (function_id) DO UPDATE SET anchor = excluded.anchor, last_fire = excluded.last_fire, "
            "paused = excluded.paused, version = excluded.version",
            (record.function_id, record.anchor, record.last_fire, int(record.paused), record.version))

    def delete_schedule(self, function_id: str) -> None:
        self._db.execute("DELETE FROM schedules WHERE function_id = ?", (function_id,))


class MemoryWebStore:
    """The same in memory, for tests of the scheduler and the gateway without a database."""

    def __init__(self) -> None:
        self.tokens: dict[str, ProxyTokenRecord] = {}
        self.schedules: dict[str, ScheduleRecord] = {}

    def close(self) -> None:
        pass

    def put_proxy_token(self, record: ProxyTokenRecord) -> None:
        self.tokens[record.token_id] = record

    def list_proxy_tokens(self) -> list[ProxyTokenRecord]:
        return list(self.tokens.values())

    def delete_proxy_token(self, token_id: str) -> bool:
        return self.tokens.pop(token_id, None) is not None

    def list_schedules(self) -> list[ScheduleRecord]:
        return list(self.schedules.values())

    def put_schedule(self, record: ScheduleRecord) -> None:
        self.schedules[record.function_id] = ScheduleRecord(**vars(record))

    def delete_schedule(self, function_id: str) -> None:
        self.schedules.pop(function_id, None)
