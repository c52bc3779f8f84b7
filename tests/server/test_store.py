"""The SQLite store and the blob store, directly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from skylift.server.sqlite_store import SqliteStore
from skylift.server.storage.blobs import BlobHashMismatch, FileBlobStore, MemoryBlobStore
from skylift.server.store import (
    AppRecord,
    CallRecord,
    FunctionRecord,
    ImageRecord,
    InputRecord,
    LogRecord,
    OutputRecord,
)


def test_apps_versions_and_functions_round_trip(home: Path) -> None:
    store = SqliteStore(home / "state.db")
    store.insert_app(AppRecord("ap-1", "svc", "main", "deployed", 1.0))
    assert [store.add_version("ap-1", 2.0, "t", None, {"f": "fu-1"}) for _ in range(3)] == [1, 2, 3]
    assert [v.version for v in store.list_versions("ap-1")] == [1, 2, 3]
    assert store.list_versions("ap-1")[0].function_ids == {"f": "fu-1"}
    store.insert_function(FunctionRecord("fu-1", "ap-1", "f", {"tag": "f", "blob": b"\x00"}, 1.0))
    store.set_autoscaler_override("fu-1", {"min_containers": 2})
    assert store.get_function("fu-1").autoscaler_override == {"min_containers": 2}  # type: ignore[union-attr]
    store.set_function_definition("fu-1", {"tag": "f", "v": 2})
    got = store.get_function("fu-1")
    assert got is not None and got.definition == {"tag": "f", "v": 2} and got.autoscaler_override == {}
    store.set_app_state("ap-1", "stopped", 5.0)
    assert store.get_app("ap-1") == AppRecord("ap-1", "svc", "main", "stopped", 1.0, 5.0)
    assert store.list_apps("other") == []
    store.close()


def test_durable_calls_inputs_and_outputs(home: Path) -> None:
    store = SqliteStore(home / "state.db")
    store.insert_call(CallRecord("fc-1", "fu-1", b"p", "map", "pending", 2, False, 1.0),
                      [InputRecord("in-1", "fc-1", 0, b"a", None), InputRecord("in-2", "fc-1", 1, b"b", "m")])
    store.add_inputs("fc-1", [InputRecord("in-3", "fc-1", 2, b"c", None)], 3)
    store.close_call("fc-1", 3)
    store.set_attempts([("in-2", 2)])
    store.record_outputs([OutputRecord("in-1", "fc-1", 0, {"status": "success", "data": b"A"}, 2.0)], [])
    [call] = store.unfinished_calls()
    assert call.closed and call.num_inputs == 3 and call.params == b"p"
    assert [(i.input_id, i.attempt, i.method) for i in store.pending_inputs("fc-1")] == [
        ("in-2", 2, "m"), ("in-3", 1, None)]
    store.record_outputs([OutputRecord("in-2", "fc-1", 1, {"status": "success"}, 2.0),
                          OutputRecord("in-3", "fc-1", 2, {"status": "failure"}, 2.0)], [("fc-1", "failure", 3.0)])
    assert store.unfinished_calls() == []
    assert [o.index for o in store.get_outputs("fc-1", 1, 10)] == [1, 2]
    assert store.expire_calls(2.5) == 0 and store.expire_calls(3.5) == 1
    assert store.get_outputs("fc-1", 0, 10) == [] and store.get_call("fc-1").state == "expired"  # type: ignore[union-attr]
    store.close()


def test_logs_and_images(home: Path) -> None:
    store = SqliteStore(home / "state.db")
    seqs = store.append_logs([LogRecord(0, "ap-1", "ta-1", "f", "stdout", f"line {n}", 1.0) for n in range(3)])
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert [r.text for r in store.read_logs("ap-1", seqs[0], 10)] == ["line 1", "line 2"]
    assert store.read_logs("ap-2", 0, 10) == []
    store.put_image(ImageRecord("im-1", {"layers": []}, "building"))
    store.put_image(ImageRecord("im-1", {"layers": []}, "ready", None, 9.0))
    assert store.get_image("im-1") == ImageRecord("im-1", {"layers": []}, "ready", None, 9.0)
    store.close()


def test_the_store_survives_reopening(home: Path) -> None:
    store = SqliteStore(home / "state.db")
    store.insert_app(AppRecord("ap-1", None, "main", "ephemeral", 1.0))
    store.close()
    again = SqliteStore(home / "state.db")
    assert again.get_app("ap-1") is not None
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_blob_stores_verify_and_deduplicate(home: Path, kind: str) -> None:
    blobs = FileBlobStore(home / "blobs") if kind == "file" else MemoryBlobStore()
    data = b"hello"
    digest = hashlib.sha256(data).hexdigest()
    assert not blobs.has(digest) and blobs.get(digest) is None
    with pytest.raises(BlobHashMismatch):
        blobs.put(hashlib.sha256(b"x").hexdigest(), data)
    blobs.put(digest, data)
    blobs.put(digest, data)
    assert blobs.has(digest) and blobs.get(digest) == data


def test_file_blobs_refuse_paths_that_are_not_hashes(home: Path) -> None:
    with pytest.raises(ValueError):
        FileBlobStore(home / "blobs").get("../../etc/passwd")
