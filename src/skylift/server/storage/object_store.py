"""What the control plane persists for named objects: Secrets, Volumes, Dicts and Queues.

A second small `Store`-like protocol beside `store.Store` (apps, functions, calls), so storage
can move on its own (an object store for volume blobs, PostgreSQL for the rest). It runs on the
same `Database` thread as the main store; `sqlite_objects.SqliteObjects` is the SQLite version,
in the same `state.db`.

Everything a user puts in a Dict or Queue is committed before the call answers, so it survives a
restart of the control plane (kill -9 included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..._volumes.manifest import Entry

KINDS = ("secret", "volume", "dict", "queue")


@dataclass
class ObjectRecord:
    object_id: str
    kind: str
    name: str | None
    environment: str
    created_at: float
    ephemeral: bool = False


@dataclass
class SecretRecord:
    secret_id: str
    keys: list[str]  # the variable names (not secret); values only in `sealed`
    sealed: bytes
    updated_at: float


class QueueFull(Exception):
    """A partition holds its maximum number of items."""


class ObjectStore(Protocol):
    def close(self) -> None: ...

    # registry
    def insert_object(self, record: ObjectRecord, fingerprint: str | None = None) -> None: ...
    def find_object(self, kind: str, environment: str, name: str) -> ObjectRecord | None: ...
    def find_fingerprint(self, kind: str, fingerprint: str) -> ObjectRecord | None: ...
    def get_object(self, object_id: str) -> ObjectRecord | None: ...
    def list_objects(self, kind: str, environment: str) -> list[ObjectRecord]: ...
    def rename_object(self, object_id: str, name: str) -> None: ...
    def delete_object(self, object_id: str) -> None:
        """The object and everything in it."""
        ...
    def delete_ephemeral(self) -> int: ...
    def count(self, record: ObjectRecord) -> int:
        """Entries of a dict, items of a queue, files of a volume, keys of a secret."""
        ...

    # secrets
    def put_secret(self, secret: SecretRecord) -> None: ...
    def all_secrets(self) -> list[SecretRecord]: ...

    # dicts: keys are the bytes of a deterministic pickle
    def dict_put(self, dict_id: str, items: list[tuple[bytes, bytes]], skip_if_exists: bool, now: float) -> int:
        """Returns how many were written (with skip_if_exists, existing keys are kept)."""
        ...
    def dict_get(self, dict_id: str, key: bytes) -> bytes | None: ...
    def dict_contains(self, dict_id: str, key: bytes) -> bool:
        """Called on the event loop: a point read that must not wait on the store's thread."""
        ...
    def dict_pop(self, dict_id: str, key: bytes) -> bytes | None: ...
    def dict_clear(self, dict_id: str) -> None: ...
    def dict_scan(self, dict_id: str, after: int, limit: int,
                  values: bool) -> list[tuple[int, bytes, bytes | None]]: ...

    # queues
    def queue_put(self, queue_id: str, partition: str, values: list[bytes], max_items: int, expires_at: float,
                  now: float) -> None:
        """Raises QueueFull (and writes nothing) if the partition would exceed `max_items`."""
        ...
    def queue_take(self, queue_id: str, partition: str, n: int, now: float) -> list[bytes]: ...
    def queue_peek(self, queue_id: str, partition: str, after: int, n: int, now: float) -> list[tuple[int, bytes]]: ...
    def queue_len(self, queue_id: str, partition: str | None, now: float) -> int:
        """Items in one partition, or in all of them (None)."""
        ...
    def queue_clear(self, queue_id: str, partition: str | None) -> None: ...

    # volumes
    def volume_load(self, volume_id: str) -> tuple[int, list[Entry]]: ...
    def volume_commit(self, volume_id: str, version: int, written: list[Entry], removed: list[str]) -> None: ...
