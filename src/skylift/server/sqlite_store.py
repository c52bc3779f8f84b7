"""The default `Store`: one SQLite file in WAL mode.

The schema is plain tables with text ids and no SQLite-only tricks in the queries, so a
PostgreSQL store can follow with the same statements (placeholders and the log sequence aside).
`synchronous=NORMAL` in WAL mode keeps every committed transaction across a crash of the process
(`kill -9`), which is what durable spawned calls need; only a power loss can drop the last ones.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import msgpack

from .store import (
    AppRecord,
    CallRecord,
    FunctionRecord,
    ImageRecord,
    InputRecord,
    LogRecord,
    OutputRecord,
    TaskRecord,
    VersionRecord,
)

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
    id TEXT PRIMARY KEY, name TEXT, environment TEXT NOT NULL DEFAULT 'main', state TEXT NOT NULL,
    created_at REAL NOT NULL, stopped_at REAL, description TEXT);
CREATE INDEX IF NOT EXISTS apps_by_name ON apps (environment, name);
CREATE TABLE IF NOT EXISTS app_versions (
    app_id TEXT NOT NULL, version INTEGER NOT NULL, deployed_at REAL NOT NULL, tag TEXT,
    commit_info TEXT, function_ids TEXT NOT NULL, PRIMARY KEY (app_id, version));
CREATE TABLE IF NOT EXISTS functions (
    id TEXT PRIMARY KEY, app_id TEXT NOT NULL, tag TEXT NOT NULL, definition BLOB NOT NULL,
    created_at REAL NOT NULL, autoscaler_override BLOB);
CREATE INDEX IF NOT EXISTS functions_by_app ON functions (app_id, tag);
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY, function_id TEXT NOT NULL, params BLOB, kind TEXT NOT NULL, state TEXT NOT NULL,
    num_inputs INTEGER NOT NULL, closed INTEGER NOT NULL, created_at REAL NOT NULL, finished_at REAL,
    parent_input_id TEXT);
CREATE INDEX IF NOT EXISTS calls_by_state ON calls (state);
CREATE TABLE IF NOT EXISTS call_keys (key TEXT PRIMARY KEY, call_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS call_keys_by_call ON call_keys (call_id);
CREATE TABLE IF NOT EXISTS inputs (
    id TEXT PRIMARY KEY, call_id TEXT NOT NULL, idx INTEGER NOT NULL, args BLOB NOT NULL, method TEXT,
    attempt INTEGER NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS inputs_by_call ON inputs (call_id, idx);
CREATE TABLE IF NOT EXISTS outputs (
    input_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, idx INTEGER NOT NULL, output BLOB NOT NULL,
    created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS outputs_by_call ON outputs (call_id, idx);
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, app_id TEXT NOT NULL, task_id TEXT NOT NULL,
    function_tag TEXT NOT NULL, stream TEXT NOT NULL, text TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_app ON logs (app_id, seq);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, token_hash TEXT NOT NULL, function_id TEXT NOT NULL, params BLOB, worker_id TEXT NOT NULL,
    cpu REAL NOT NULL, memory_mb INTEGER NOT NULL, gpu_type TEXT, gpu_count INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, definition BLOB NOT NULL, status TEXT NOT NULL, error TEXT, built_at REAL);
"""

RUNNING_CALL_STATES = ("pending", "running")


def _pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _unpack(data: bytes | None) -> Any:
    if data is None:
        return None
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class SqliteStore:
    def __init__(self, path: Path | str) -> None:
        # The connection is used by one thread at a time (the `Database` executor after startup).
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(f"{path} was written by a newer skylift (schema {row[0]} > {SCHEMA_VERSION})")
        self._add_app_columns()

    def _add_app_columns(self) -> None:
        """Columns the apps table gained later (docs/security.md); older state.db files get them here."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(apps)")}
        for column, sql_type in (("strict_containers", "INTEGER NOT NULL DEFAULT 0"), ("owner_task", "TEXT")):
            if column not in have:
                self._db.execute(f"ALTER TABLE apps ADD COLUMN {column} {sql_type}")

    def close(self) -> None:
        self._db.close()

    def _tx(self, statements: list[tuple[str, Any]]) -> None:
        """Run statements in one transaction; each is (sql, params) or (sql, [params, ...]) for many."""
        cur = self._db.cursor()
        cur.execute("BEGIN")
        try:
            for sql, args in statements:
                if isinstance(args, list):
                    cur.executemany(sql, args)
                else:
                    cur.execute(sql, args)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    # ---- apps ---------------------------------------------------------------------------------

    def insert_app(self, app: AppRecord) -> None:
        self._db.execute(
            "INSERT INTO apps (id, name, environment, state, created_at, stopped_at, description, strict_containers, "
            "owner_task) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (app.app_id, app.name, app.environment, app.state, app.created_at, app.stopped_at, app.description,
             int(app.strict_containers), app.owner_task or None))

    def set_app_strict(self, app_id: str, strict: bool) -> None:
        self._db.execute("UPDATE apps SET strict_containers = ? WHERE id = ?", (int(strict), app_id))

    _APP_COLUMNS = "id, name, environment, state, created_at, stopped_at, description, strict_containers, owner_task"

    @staticmethod
    def _app(row: Any) -> AppRecord:
        app_id, name, environment, state, created_at, stopped_at, description, strict, owner = row
        return AppRecord(app_id, name, environment, state, created_at, stopped_at, description,
                         strict_containers=bool(strict), owner_task=owner or "")

    def set_app_state(self, app_id: str, state: str, stopped_at: float | None) -> None:
        self._db.execute("UPDATE apps SET state = ?, stopped_at = ? WHERE id = ?", (state, stopped_at, app_id))

    def get_app(self, app_id: str) -> AppRecord | None:
        row = self._db.execute(f"SELECT {self._APP_COLUMNS} FROM apps WHERE id = ?", (app_id,)).fetchone()
        return self._app(row) if row else None

    def list_apps(self, environment: str | None) -> list[AppRecord]:
        sql = f"SELECT {self._APP_COLUMNS} FROM apps"
        if environment is None:
            rows = self._db.execute(sql + " ORDER BY created_at").fetchall()
        else:
            rows = self._db.execute(sql + " WHERE environment = ? ORDER BY created_at", (environment,)).fetchall()
        return [self._app(row) for row in rows]

    def add_version(self, app_id: str, deployed_at: float, tag: str | None, commit_info: str | None,
                    function_ids: dict[str, str]) -> int:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            (current,) = cur.execute(
                "SELECT COALESCE(MAX(version), 0) FROM app_versions WHERE app_id = ?", (app_id,)).fetchone()
            version = int(current) + 1
            cur.execute(
                "INSERT INTO app_versions (app_id, version, deployed_at, tag, commit_info, function_ids) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (app_id, version, deployed_at, tag, commit_info, json.dumps(function_ids, sort_keys=True)))
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return version

    def list_versions(self, app_id: str) -> list[VersionRecord]:
        rows = self._db.execute(
            "SELECT app_id, version, deployed_at, tag, commit_info, function_ids FROM app_versions "
            "WHERE app_id = ? ORDER BY version", (app_id,)).fetchall()
        return [VersionRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # ---- functions ----------------------------------------------------------------------------

    def insert_function(self, function: FunctionRecord) -> None:
        self._db.execute(
            "INSERT INTO functions (id, app_id, tag, definition, created_at, autoscaler_override) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (function.function_id, function.app_id, function.tag, _pack(function.definition), function.created_at,
             _pack(function.autoscaler_override)))

    def set_function_definition(self, function_id: str, definition: dict[str, Any]) -> None:
        self._db.execute("UPDATE functions SET definition = ?, autoscaler_override = ? WHERE id = ?",
                         (_pack(definition), _pack({}), function_id))

    def set_autoscaler_override(self, function_id: str, override: dict[str, Any]) -> None:
        self._db.execute("UPDATE functions SET autoscaler_override = ? WHERE id = ?", (_pack(override), function_id))

    def _function(self, row: Any) -> FunctionRecord:
        return FunctionRecord(row[0], row[1], row[2], _unpack(row[3]), row[4], _unpack(row[5]) or {})

    def get_function(self, function_id: str) -> FunctionRecord | None:
        row = self._db.execute(
            "SELECT id, app_id, tag, definition, created_at, autoscaler_override FROM functions WHERE id = ?",
            (function_id,)).fetchone()
        return self._function(row) if row else None

    def list_functions(self, app_id: str) -> list[FunctionRecord]:
        rows = self._db.execute(
            "SELECT id, app_id, tag, definition, created_at, autoscaler_override FROM functions "
            "WHERE app_id = ? ORDER BY created_at", (app_id,)).fetchall()
        return [self._function(row) for row in rows]

    # ---- durable calls ------------------------------------------------------------------------

    @staticmethod
    def _input_rows(inputs: list[InputRecord]) -> list[tuple[Any, ...]]:
        return [(i.input_id, i.call_id, i.index, i.args, i.method, i.attempt, "pending") for i in inputs]

    _INSERT_INPUT = "INSERT INTO inputs (id, call_id, idx, args, method, attempt, state) VALUES (?, ?, ?, ?, ?, ?, ?)"

    def insert_call(self, call: CallRecord, inputs: list[InputRecord], key: str | None = None) -> None:
        # The key commits with the call: a retry finds the call exactly when the call exists.
        keys = [(key, call.call_id)] if key is not None else []
        self._tx([
            ("INSERT INTO calls (id, function_id, params, kind, state, num_inputs, closed, created_at, "
             "finished_at, parent_input_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (call.call_id, call.function_id, call.params, call.kind, call.state, call.num_inputs,
              int(call.closed), call.created_at, call.finished_at, call.parent_input_id)),
            (self._INSERT_INPUT, self._input_rows(inputs)),
            ("INSERT INTO call_keys (key, call_id) VALUES (?, ?)", keys),
        ])

    def call_for_key(self, key: str) -> str | None:
        row = self._db.execute("SELECT call_id FROM call_keys WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def input_ids(self, call_id: str, start_index: int, limit: int) -> list[str]:
        rows = self._db.execute("SELECT id FROM inputs WHERE call_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
                                (call_id, start_index, limit)).fetchall()
        return [str(r[0]) for r in rows]

    def add_inputs(self, call_id: str, inputs: list[InputRecord], num_inputs: int) -> None:
        self._tx([
            (self._INSERT_INPUT, self._input_rows(inputs)),
            ("UPDATE calls SET num_inputs = ? WHERE id = ?", (num_inputs, call_id)),
        ])

    def close_call(self, call_id: str, num_inputs: int) -> None:
        self._db.execute("UPDATE calls SET closed = 1, num_inputs = ? WHERE id = ?", (num_inputs, call_id))

    def set_attempts(self, attempts: list[tuple[str, int]]) -> None:
        self._tx([("UPDATE inputs SET attempt = ? WHERE id = ?", [(a, i) for i, a in attempts])])

    def record_outputs(self, outputs: list[OutputRecord], finished: list[tuple[str, str, float]]) -> None:
        self._tx([
            ("INSERT INTO outputs (input_id, call_id, idx, output, created_at) VALUES (?, ?, ?, ?, ?) "
             "ON CONFLICT (input_id) DO UPDATE SET output = excluded.output, created_at = excluded.created_at",
             [(o.input_id, o.call_id, o.index, _pack(o.output), o.created_at) for o in outputs]),
            # The arguments are not needed once the input is done; the row stays as a marker.
            ("UPDATE inputs SET state = 'done', args = ? WHERE id = ?", [(b"", o.input_id) for o in outputs]),
            ("UPDATE calls SET state = ?, finished_at = ? WHERE id = ?", [(s, at, c) for c, s, at in finished]),
        ])

    _CALL_COLUMNS = ("SELECT id, function_id, params, kind, state, num_inputs, closed, created_at, finished_at, "
                     "parent_input_id FROM calls")

    @staticmethod
    def _call(row: Any) -> CallRecord:
        return CallRecord(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7], row[8], row[9])

    def get_call(self, call_id: str) -> CallRecord | None:
        row = self._db.execute(self._CALL_COLUMNS + " WHERE id = ?", (call_id,)).fetchone()
        return self._call(row) if row else None

    def unfinished_calls(self) -> list[CallRecord]:
        rows = self._db.execute(self._CALL_COLUMNS + " WHERE state IN (?, ?) ORDER BY created_at",
                                RUNNING_CALL_STATES).fetchall()
        return [self._call(row) for row in rows]

    def pending_inputs(self, call_id: str) -> list[InputRecord]:
        rows = self._db.execute(
            "SELECT id, call_id, idx, args, method, attempt FROM inputs WHERE call_id = ? AND state = 'pending' "
            "ORDER BY idx", (call_id,)).fetchall()
        return [InputRecord(*row) for row in rows]

    def get_outputs(self, call_id: str, start_index: int, limit: int) -> list[OutputRecord]:
        rows = self._db.execute(
            "SELECT input_id, call_id, idx, output, created_at FROM outputs WHERE call_id = ? AND idx >= ? "
            "ORDER BY idx LIMIT ?", (call_id, start_index, limit)).fetchall()
        return [OutputRecord(r[0], r[1], r[2], _unpack(r[3]), r[4]) for r in rows]

    def expire_calls(self, finished_before: float) -> int:
        ids = [r[0] for r in self._db.execute(
            "SELECT id FROM calls WHERE finished_at IS NOT NULL AND finished_at < ? AND state != 'expired'",
            (finished_before,)).fetchall()]
        if ids:
            rows = [(i,) for i in ids]
            self._tx([
                ("DELETE FROM outputs WHERE call_id = ?", rows),
                ("DELETE FROM inputs WHERE call_id = ?", rows),
                ("DELETE FROM call_keys WHERE call_id = ?", rows),
                ("UPDATE calls SET state = 'expired' WHERE id = ?", rows),
            ])
        return len(ids)

    # ---- logs ---------------------------------------------------------------------------------

    def append_logs(self, entries: list[LogRecord]) -> list[int]:
        cur = self._db.cursor()
        seqs: list[int] = []
        cur.execute("BEGIN")
        try:
            for e in entries:
                cur.execute("INSERT INTO logs (app_id, task_id, function_tag, stream, text, ts) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (e.app_id, e.task_id, e.function_tag, e.stream, e.text, e.ts))
                seqs.append(int(cur.lastrowid or 0))
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return seqs

    def read_logs(self, app_id: str, after_seq: int, limit: int) -> list[LogRecord]:
        rows = self._db.execute(
            "SELECT seq, app_id, task_id, function_tag, stream, text, ts FROM logs WHERE app_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?", (app_id, after_seq, limit)).fetchall()
        return [LogRecord(*row) for row in rows]

    def prune_logs(self, before: float) -> int:
        return int(self._db.execute("DELETE FROM logs WHERE ts < ?", (before,)).rowcount)

    # ---- containers ---------------------------------------------------------------------------

    def insert_task(self, task: TaskRecord) -> None:
        self._db.execute(
            "INSERT INTO tasks (id, token_hash, function_id, params, worker_id, cpu, memory_mb, gpu_type, gpu_count, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task.task_id, task.token_hash, task.function_id, task.params, task.worker_id, task.cpu, task.memory_mb,
             task.gpu_type, task.gpu_count, task.created_at))

    def delete_task(self, task_id: str) -> None:
        self._db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))

    def list_tasks(self) -> list[TaskRecord]:
        rows = self._db.execute(
            "SELECT id, token_hash, function_id, params, worker_id, cpu, memory_mb, gpu_type, gpu_count, created_at "
            "FROM tasks ORDER BY created_at").fetchall()
        return [TaskRecord(*row) for row in rows]

    # ---- images -------------------------------------------------------------------------------

    def put_image(self, image: ImageRecord) -> None:
        self._db.execute(
            "INSERT INTO images (id, definition, status, error, built_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET definition = excluded.definition, status = excluded.status, "
            "error = excluded.error, built_at = excluded.built_at",
            (image.image_id, _pack(image.definition), image.status, image.error, image.built_at))

    def get_image(self, image_id: str) -> ImageRecord | None:
        row = self._db.execute("SELECT id, definition, status, error, built_at FROM images WHERE id = ?",
                               (image_id,)).fetchone()
        return ImageRecord(row[0], _unpack(row[1]), row[2], row[3], row[4]) if row else None
