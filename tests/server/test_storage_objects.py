"""Secrets, Dicts, Queues and Volumes in the control plane, over real connections."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from conftest import definition
from skylift._protocol.rpc import ErrorCode, RpcError
from skylift.server.storage.object_store import ObjectRecord, QueueFull
from skylift.server.storage.queue_api import check_partition
from skylift.server.storage.secret_box import SecretBox, SecretKeyError, load_or_create_key
from skylift.server.storage.sqlite_objects import SqliteObjects

VALUE = "do-not-store-me-in-the-clear-42"


async def _object(client, kind: str, name: str) -> str:  # type: ignore[no-untyped-def]
    got = await client.call("object.get", {"kind": kind, "name": name, "environment": "main",
                                           "create_if_missing": True})
    return str(got["object_id"])


async def test_task_spec_gets_secrets_in_order_and_attachments(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        first = (await client.call("secret.create", {"name": "first", "values": {"A": VALUE, "B": "first"}}))
        second = (await client.call("secret.create", {"values": {"B": "second", "C": "c"}}))
        creds = (await client.call("secret.create", {"values": {"AWS_ACCESS_KEY_ID": "id",
                                                               "AWS_SECRET_ACCESS_KEY": "key"}}))
        again = await client.call("secret.create", {"values": {"B": "second", "C": "c"}})
        assert again["object_id"] == second["object_id"]  # anonymous secrets are stored once
        volume_id = await _object(client, "volume", "vol")
        bucket = {"mount_path": "/bucket", "bucket_name": "b", "endpoint_url": None, "key_prefix": "",
                  "read_only": True, "secret_id": creds["object_id"]}
        await h.app(client, definition(secret_ids=[first["object_id"], second["object_id"]], env={"C": "env"},
                                       volume_ids={"/data": volume_id}, cloud_bucket_mounts=[bucket]))
        await client.call("call.start", {"function_id": next(iter(h.cp.catalog.functions)), "invocation": "async",
                                         "inputs": [{"args": b""}]})
        task = (await worker.next("start_task"))["task"]
        assert task["env"]["A"] == VALUE and task["env"]["B"] == "second" and task["env"]["C"] == "env"
        assert task["volumes"] == [{"mount_path": "/data", "volume_id": volume_id}]
        assert task["bucket_mounts"][0]["credentials"] == {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}
        assert "secret_id" not in task["bucket_mounts"][0]
        listing = await client.call("object.list", {"kind": "secret", "environment": "main"})
        assert [(o["name"], o["size"]) for o in listing["objects"]] == [("first", 2)]
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            path = h.cp.home / name
            if path.exists():
                assert VALUE.encode() not in path.read_bytes()
        with pytest.raises(RpcError) as info:
            await client.call("secret.create", {"name": "first", "values": {"A": "x"}})
        assert info.value.code == ErrorCode.CONFLICT and VALUE not in info.value.message


async def test_blocked_queue_get_wakes_on_put_and_full_put_waits_for_room(platform):
    async with platform() as h:
        consumer, producer = await h.client(), await h.client()
        queue_id = await _object(producer, "queue", "q")
        waiting = asyncio.ensure_future(consumer.call("queue.get", {"queue_id": queue_id, "n": 10, "timeout": 10}))
        await asyncio.sleep(0.1)
        start = time.monotonic()
        await producer.call("queue.put", {"queue_id": queue_id, "values": [b"1", b"2"]})
        assert (await waiting)["values"] == [b"1", b"2"]
        assert time.monotonic() - start < 0.5
        await producer.call("queue.put", {"queue_id": queue_id, "values": [b"x"] * 5000, "partition": "p"})
        with pytest.raises(RpcError) as info:
            await producer.call("queue.put", {"queue_id": queue_id, "values": [b"y"], "partition": "p", "timeout": 0})
        assert info.value.code == ErrorCode.RESOURCE_EXHAUSTED and "queue full" in info.value.message
        blocked = asyncio.ensure_future(producer.call("queue.put", {"queue_id": queue_id, "values": [b"y"],
                                                                    "partition": "p", "timeout": 10}))
        await asyncio.sleep(0.1)
        assert not blocked.done()
        await consumer.call("queue.get", {"queue_id": queue_id, "partition": "p", "n": 1, "timeout": 0})
        await asyncio.wait_for(blocked, 2)
        assert (await consumer.call("queue.len", {"queue_id": queue_id, "partition": "p"}))["len"] == 5000
        assert (await consumer.call("queue.len", {"queue_id": queue_id, "total": True}))["len"] == 5000


async def test_ephemeral_objects_go_with_their_connection(platform):
    async with platform() as h:
        owner, other = await h.client(), await h.client()
        dict_id = (await owner.call("object.ephemeral", {"kind": "dict"}))["object_id"]
        await other.call("dict.put", {"dict_id": dict_id, "items": [[b"k", b"v"]]})
        await owner.close()
        for _ in range(100):
            try:
                await other.call("dict.len", {"dict_id": dict_id})
            except RpcError as exc:
                assert exc.code == ErrorCode.NOT_FOUND
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the ephemeral Dict outlived its connection")


async def test_dict_skip_if_exists_and_scan_pages(platform):
    async with platform() as h:
        client = await h.client()
        dict_id = await _object(client, "dict", "d")
        items = [[f"k{i}".encode(), f"v{i}".encode()] for i in range(250)]
        assert (await client.call("dict.put", {"dict_id": dict_id, "items": items}))["written"] == 250
        got = await client.call("dict.put", {"dict_id": dict_id, "items": [[b"k1", b"new"], [b"fresh", b"f"]],
                                             "skip_if_exists": True})
        assert got["written"] == 1
        assert (await client.call("dict.get", {"dict_id": dict_id, "key": b"k1"}))["value"] == b"v1"
        seen, after = [], 0
        while True:
            page = await client.call("dict.scan", {"dict_id": dict_id, "after": after, "limit": 100})
            seen += [k for k, _ in page["items"]]
            after = page["next"]
            if page["done"]:
                break
        assert len(seen) == 251 and seen[0] == b"k0" and seen[-1] == b"fresh"
        with pytest.raises(RpcError, match=r"no Dict with id"):
            await client.call("dict.get", {"dict_id": "di-nope", "key": b"k"})


async def test_volume_commit_rules(platform):
    async with platform() as h:
        client = await h.client()
        volume_id = await _object(client, "volume", "v")
        data = b"hello"
        digest = hashlib.sha256(data).hexdigest()
        entry = ["a/b.txt", 1, [digest], 5, 0o644, 1]
        with pytest.raises(RpcError, match="not uploaded"):
            await client.call("volume.commit", {"volume_id": volume_id, "puts": [entry]})
        assert (await client.call("volume.write_blocks", {"blocks": [data]}))["hashes"] == [digest]
        assert (await client.call("volume.commit", {"volume_id": volume_id, "puts": [entry]}))["version"] == 1
        with pytest.raises(RpcError) as info:
            await client.call("volume.commit", {"volume_id": volume_id, "puts": [entry], "force": False})
        assert info.value.code == ErrorCode.CONFLICT
        manifest = await client.call("volume.manifest", {"volume_id": volume_id})
        assert manifest["version"] == 1 and sorted(e[0] for e in manifest["entries"]) == ["a", "a/b.txt"]
        with pytest.raises(RpcError, match=r"\.\."):
            await client.call("volume.listdir", {"volume_id": volume_id, "path": "../x"})
        assert (await client.call("volume.read_blocks", {"hashes": [digest]}))["blocks"] == [data]


def test_queue_partition_rules_and_ttl(tmp_path: Path) -> None:
    assert check_partition("m", None) == ""
    assert check_partition("m", "a" * 64) == "a" * 64
    for bad in ("", "é" * 33):
        with pytest.raises(RpcError, match="1 to 64 bytes"):
            check_partition("m", bad)
    store = SqliteObjects(tmp_path / "state.db")
    store.insert_object(ObjectRecord("qu-1", "queue", "q", "main", 0.0))
    store.queue_put("qu-1", "p", [b"1", b"2"], 3, expires_at=100.0, now=0.0)
    with pytest.raises(QueueFull):
        store.queue_put("qu-1", "p", [b"3", b"4"], 3, expires_at=100.0, now=1.0)
    assert store.queue_len("qu-1", "p", now=50.0) == 2
    assert store.queue_peek("qu-1", "p", 0, 10, now=50.0)[0][1] == b"1"
    assert store.queue_take("qu-1", "p", 1, now=50.0) == [b"1"]
    assert store.queue_len("qu-1", None, now=101.0) == 0  # the partition expired a TTL after its last put
    store.close()


def test_secret_box(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    assert load_or_create_key(tmp_path) == key and (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    box = SecretBox(key)
    sealed = box.seal("st-1", {"K": "v"})
    assert box.open("st-1", sealed) == {"K": "v"}
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        box.open("st-2", sealed)  # bound to its id
    with pytest.raises(SecretKeyError):
        box.open("st-1", sealed[:-1] + bytes([sealed[-1] ^ 1]))
    assert box.fingerprint("main", {"a": "1"}) == box.fingerprint("main", {"a": "1"})
    assert box.fingerprint("main", {"a": "1"}) != SecretBox(bytes(32)).fingerprint("main", {"a": "1"})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "secret.key").write_text("short")
    with pytest.raises(SecretKeyError, match="restore it"):
        load_or_create_key(tmp_path / "bad")
