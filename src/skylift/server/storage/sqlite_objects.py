"""`ObjectStore` in SQLite: the same `state.db` as the main store, through a connection of its own.

Both connections are used only from the `Database` thread, so their writes never overlap. Plain
SQL without SQLite-only tricks beyond upserts, as in `sqlite_store`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ..._volumes.manifest import Entry
from .object_store import ObjectRecord, QueueFull, SecretRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT, environment TEXT NOT NULL, created_at REAL NOT NULL,
    ephemeral INTEGER NOT NULL DEFAULT 0, fingerprint TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS objects_by_name ON objects (kind, environment, name);
CREATE INDEX IF NOT EXISTS objects_by_fingerprint ON objects (kind, fingerprint);
CREATE TABLE IF NOT EXISTS secret_values (
    secret_id TEXT PRIMARY KEY, keys TEXT NOT NULL, sealed BLOB NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dict_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, dict_id TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    updated_at REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS dict_entries_by_key ON dict_entries (dict_id, key);
CREATE TABLE IF NOT EXISTS queue_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue_id TEXT NOT NULL, partition TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS queue_items_by_partition ON queue_items (queue_id, partition, seq);
CREATE TABLE IF NOT EXISTS queue_partitions (
    queue_id TEXT NOT NULL, partition TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (queue_id, partition));
CREATE TABLE IF NOT EXISTS volume_versions (volume_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS volume_files (
    volume_id TEXT NOT NULL, path TEXT NOT NULL, type INTEGER NOT NULL, blocks TEXT NOT NULL, size INTEGER NOT NULL,
    mode INTEGER NOT NULL, mtime INTEGER NOT NULL, PRIMARY KEY (volume_id, path));
"""

_OBJECT_COLUMNS = "SELECT id, kind, name, environment, created_at, ephemeral FROM objects"


def _object(row: Any) -> ObjectRecord:
    return ObjectRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]))


class SqliteObjects:
    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        # `dict_contains` runs on the event loop through a connection of its own: a primary-key
        # lookup costs less than the hop to the store's thread. WAL lets it read while the writer
        # writes; it sees every committed write. (Values, up to 100 MiB, are read on the thread.)
        self._reader = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA query_only=ON")

    def close(self) -> None:
        self._reader.close()
        self._db.close()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    # ---- registry -----------------------------------------------------------------------------

    def insert_object(self, record: ObjectRecord, fingerprint: str | None = None) -> None:
        with self._tx() as cur:
            cur.execute("INSERT INTO objects (id, kind, name, environment, created_at, ephemeral, fingerprint) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (record.object_id, record.kind, record.name, record.environment, record.created_at,
                         int(record.ephemeral), fingerprint))
            if record.kind == "volume":
                cur.execute("INSERT INTO volume_versions (volume_id, version) VALUES (?, 0)", (record.object_id,))

    def find_object(self, kind: str, environment: str, name: str) -> ObjectRecord | None:
        row = self._db.execute(_OBJECT_COLUMNS + " WHERE kind = ? AND environment = ? AND name = ?",
                               (kind, environment, name)).fetchone()
        return _object(row) if row else None

    def find_fingerprint(self, kind: str, fingerprint: str) -> ObjectRecord | None:
        row = self._db.execute(_OBJECT_COLUMNS + " WHERE kind = ? AND fingerprint = ?", (kind, fingerprint)).fetchone()
        return _object(row) if row else None

    def get_object(self, object_id: str) -> ObjectRecord | None:
        row = self._db.execute(_OBJECT_COLUMNS + " WHERE id = ?", (object_id,)).fetchone()
        return _object(row) if row else None

    def list_objects(self, kind: str, environment: str) -> list[ObjectRecord]:
        rows = self._db.execute(_OBJECT_COLUMNS + " WHERE kind = ? AND environment = ? AND name IS NOT NULL "
                                "ORDER BY created_at", (kind, environment)).fetchall()
        return [_object(row) for row in rows]

    def rename_object(self, object_id: str, name: str) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE objects SET name = ? WHERE id = ?", (name, object_id))

    _CONTENTS = (
        ("DELETE FROM secret_values WHERE secret_id = ?"),
        ("DELETE FROM dict_entries WHERE dict_id = ?"),
        ("DELETE FROM queue_items WHERE queue_id = ?"),
        ("DELETE FROM queue_partitions WHERE queue_id = ?"),
        ("DELETE FROM volume_files WHERE volume_id = ?"),
        ("DELETE FROM volume_versions WHERE volume_id = ?"),
    )

    def delete_object(self, object_id: str) -> None:
        with self._tx() as cur:
            for sql in self._CONTENTS:
                cur.execute(sql, (object_id,))
            cur.execute("DELETE FROM objects WHERE id = ?", (object_id,))

    def delete_ephemeral(self) -> int:
        ids = [r[0] for r in self._db.execute("SELECT id FROM objects WHERE ephemeral = 1").fetchall()]
        for object_id in ids:
            self.delete_object(object_id)
        return len(ids)

    def count(self, record: ObjectRecord) -> int:
        sql = {
            "dict": "SELECT COUNT(*) FROM dict_entries WHERE dict_id = ?",
            "queue": "SELECT COUNT(*) FROM queue_items WHERE queue_id = ?",
            "volume": "SELECT COUNT(*) FROM volume_files WHERE volume_id = ? AND type = 1",
        }.get(record.kind)
        if sql is None:
            row = self._db.execute("SELECT keys FROM secret_values WHERE secret_id = ?", (record.object_id,)).fetchone()
            return len(json.loads(row[0])) if row else 0
        return int(self._db.execute(sql, (record.object_id,)).fetchone()[0])

    # ---- secrets ------------------------------------------------------------------------------

    def put_secret(self, secret: SecretRecord) -> None:
        self._db.execute(
            "INSERT INTO secret_values (secret_id, keys, sealed, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (secret_id) DO UPDATE SET keys = excluded.keys, sealed = excluded.sealed, "
            "updated_at = excluded.updated_at",
            (secret.secret_id, json.dumps(secret.keys), secret.sealed, secret.updated_at))

    def all_secrets(self) -> list[SecretRecord]:
        rows = self._db.execute("SELECT secret_id, keys, sealed, updated_at FROM secret_values").fetchall()
        return [SecretRecord(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]

    # ---- dicts --------------------------------------------------------------------------------

    def dict_put(self, dict_id: str, items: list[tuple[bytes, bytes]], skip_if_exists: bool, now: float) -> int:
        rows = [(dict_id, k, v, now) for k, v in items]
        with self._tx() as cur:
            if skip_if_exists:
                cur.executemany("INSERT INTO dict_entries (dict_id, key, value, updated_at) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT (dict_id, key) DO NOTHING", rows)
            else:
                cur.executemany("INSERT INTO dict_entries (dict_id, key, value, updated_at) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT (dict_id, key) DO UPDATE SET value = excluded.value, "
                                "updated_at = excluded.updated_at", rows)
            return max(0, cur.rowcount)

    def dict_contains(self, dict_id: str, key: bytes) -> bool:
        row = self._reader.execute("SELECT 1 FROM dict_entries WHERE dict_id = ? AND key = ?",
                                   (dict_id, key)).fetchone()
        return row is not None

    def dict_get(self, dict_id: str, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT value FROM dict_entries WHERE dict_id = ? AND key = ?",
                               (dict_id, key)).fetchone()
        return row[0] if row else None

    def dict_pop(self, dict_id: str, key: bytes) -> bytes | None:
        with self._tx() as cur:
            row = cur.execute("SELECT value FROM dict_entries WHERE dict_id = ? AND key = ?", (dict_id, key)).fetchone()
            if row is not None:
                cur.execute("DELETE FROM dict_entries WHERE dict_id = ? AND key = ?", (dict_id, key))
        return row[0] if row else None

    def dict_clear(self, dict_id: str) -> None:
        self._db.execute("DELETE FROM dict_entries WHERE dict_id = ?", (dict_id,))

    def dict_scan(self, dict_id: str, after: int, limit: int, values: bool) -> list[tuple[int, bytes, bytes | None]]:
        columns = "seq, key, value" if values else "seq, key, NULL"
        rows = self._db.execute(f"SELECT {columns} FROM dict_entries WHERE dict_id = ? AND seq > ? "
                                "ORDER BY seq LIMIT ?", (dict_id, after, limit)).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # ---- queues -------------------------------------------------------------------------------

    def _expire(self, cur: sqlite3.Cursor, queue_id: str, partition: str | None, now: float) -> None:
        where, args = ("queue_id = ? AND expires_at <= ?", (queue_id, now)) if partition is None else \
            ("queue_id = ? AND partition = ? AND expires_at <= ?", (queue_id, partition, now))
        expired = cur.execute(f"SELECT partition FROM queue_partitions WHERE {where}", args).fetchall()
        for (name,) in expired:
            cur.execute("DELETE FROM queue_items WHERE queue_id = ? AND partition = ?", (queue_id, name))
            cur.execute("DELETE FROM queue_partitions WHERE queue_id = ? AND partition = ?", (queue_id, name))

    def queue_put(self, queue_id: str, partition: str, values: list[bytes], max_items: int, expires_at: float,
                  now: float) -> None:
        with self._tx() as cur:
            self._expire(cur, queue_id, partition, now)
            (n,) = cur.execute("SELECT COUNT(*) FROM queue_items WHERE queue_id = ? AND partition = ?",
                               (queue_id, partition)).fetchone()
            if n + len(values) > max_items:
                raise QueueFull(f"{n} of {max_items}")
            cur.executemany("INSERT INTO queue_items (queue_id, partition, data) VALUES (?, ?, ?)",
                            [(queue_id, partition, v) for v in values])
            cur.execute("INSERT INTO queue_partitions (queue_id, partition, expires_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (queue_id, partition) DO UPDATE SET expires_at = excluded.expires_at",
                        (queue_id, partition, expires_at))

    def queue_take(self, queue_id: str, partition: str, n: int, now: float) -> list[bytes]:
        with self._tx() as cur:
            self._expire(cur, queue_id, partition, now)
            rows = cur.execute("SELECT seq, data FROM queue_items WHERE queue_id = ? AND partition = ? "
                               "ORDER BY seq LIMIT ?", (queue_id, partition, n)).fetchall()
            if rows:
                cur.execute("DELETE FROM queue_items WHERE queue_id = ? AND partition = ? AND seq <= ?",
                            (queue_id, partition, rows[-1][0]))
        return [r[1] for r in rows]

    def queue_peek(self, queue_id: str, partition: str, after: int, n: int, now: float) -> list[tuple[int, bytes]]:
        with self._tx() as cur:
            self._expire(cur, queue_id, partition, now)
            rows = cur.execute("SELECT seq, data FROM queue_items WHERE queue_id = ? AND partition = ? AND seq > ? "
                               "ORDER BY seq LIMIT ?", (queue_id, partition, after, n)).fetchall()
        return [(r[0], r[1]) for r in rows]

    def queue_len(self, queue_id: str, partition: str | None, now: float) -> int:
        with self._tx() as cur:
            self._expire(cur, queue_id, partition, now)
            if partition is None:
                row = cur.execute("SELECT COUNT(*) FROM queue_items WHERE queue_id = ?", (queue_id,)).fetchone()
            else:
                row = cur.execute("SELECT COUNT(*) FROM queue_items WHERE queue_id = ? AND partition = ?",
                                  (queue_id, partition)).fetchone()
        return int(row[0])

    def queue_clear(self, queue_id: str, partition: str | None) -> None:
        with self._tx() as cur:
            if partition is None:
                cur.execute("DELETE FROM queue_items WHERE queue_id = ?", (queue_id,))
                cur.execute("DELETE FROM queue_partitions WHERE queue_id = ?", (queue_id,))
            else:
                cur.execute("DELETE FROM queue_items WHERE queue_id = ? AND partition = ?", (queue_id, partition))
                cur.execute("DELETE FROM queue_partitions WHERE queue_id = ? AND partition = ?", (queue_id, partition))

    # ---- volumes ------------------------------------------------------------------------------

    def volume_load(self, volume_id: str) -> tuple[int, list[Entry]]:
        row = self._db.execute("SELECT version FROM volume_versions WHERE volume_id = ?", (volume_id,)).fetchone()
        rows = self._db.execute("SELECT path, type, blocks, size, mode, mtime FROM volume_files WHERE volume_id = ?",
                                (volume_id,)).fetchall()
        entries = [Entry(r[0], r[1], tuple(r[2].split(",")) if r[2] else (), r[3], r[4], r[5]) for r in rows]
        return (int(row[0]) if row else 0), entries

    def volume_commit(self, volume_id: str, version: int, written: list[Entry], removed: list[str]) -> None:
        with self._tx() as cur:
            cur.executemany("DELETE FROM volume_files WHERE volume_id = ? AND path = ?",
                            [(volume_id, p) for p in removed])
            cur.executemany(
                "INSERT INTO volume_files (volume_id, path, type, blocks, size, mode, mtime) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (volume_id, path) DO UPDATE SET type = excluded.type, blocks = excluded.blocks, "
                "size = excluded.size, mode = excluded.mode, mtime = excluded.mtime",
                [(volume_id, e.path, e.type, ",".join(e.blocks), e.size, e.mode, e.mtime) for e in written])
            cur.execute("INSERT INTO volume_versions (volume_id, version) VALUES (?, ?) "
                        "ON CONFLICT (volume_id) DO UPDATE SET version = excluded.version", (volume_id, version))


class _Transaction:
    """`with` block = one transaction (BEGIN … COMMIT, ROLLBACK on any exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._cur = db.cursor()

    def __enter__(self) -> sqlite3.Cursor:
        self._cur.execute("BEGIN")
        return self._cur

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._cur.execute("ROLLBACK" if exc_type is not None else "COMMIT")
