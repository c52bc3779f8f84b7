"""Secrets, Volumes, Dicts and Queues end to end: from the local program and from containers."""

from __future__ import annotations

import io
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apps import storage

import skylift as modal
from skylift.exception import AlreadyExistsError, InvalidError, NotFoundError, RequestSizeError, SerializationError

# A value no test writes anywhere else: its bytes must never reach the database files.
SECRET_VALUE = "s3cr3t-" + secrets.token_hex(16)

# The process runtime shows a volume at its mount path through a private mount namespace (root);
# without root only one container at a time could get /data (see worker/process_binds.py).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="volume mounts at /data need root in the process runtime")


@pytest.fixture(scope="module", autouse=True)
def running(platform: object) -> Iterator[None]:
    modal.Secret.objects.create(storage.SECRET_NAME, {"FROM_NAMED": SECRET_VALUE, "SHARED": "first"},
                                allow_existing=True)
    with storage.app.run():
        yield


# ---- secrets -----------------------------------------------------------------------------------


def test_secrets_become_env_vars_in_order(platform: Any) -> None:
    got = storage.read_env.remote(["FROM_NAMED", "FROM_DICT", "SHARED", "FROM_ENV"])
    assert got == {"FROM_NAMED": SECRET_VALUE, "FROM_DICT": "dict", "SHARED": "second secret wins",
                   "FROM_ENV": "env"}
    for name in ("state.db", "state.db-wal", "state.db-shm", "server.log"):
        path = Path(platform.home) / name
        if path.exists():
            assert SECRET_VALUE.encode() not in path.read_bytes(), f"the secret's value is in {name}"
    assert (Path(platform.home) / "secret.key").stat().st_mode & 0o777 == 0o600


def test_missing_secret_fails_at_run_time_naming_the_fix() -> None:
    app = modal.App("e2e-missing-secret")

    @app.function(secrets=[modal.Secret.from_name("no-such-secret")], serialized=True)
    def f() -> None:
        pass

    with pytest.raises(NotFoundError, match="skylift secret create no-such-secret"), app.run():
        pass
    with pytest.raises(NotFoundError, match="missing required key"):
        modal.Secret.from_name(storage.SECRET_NAME, required_keys=["NOPE"]).hydrate()


def test_secret_objects_and_bad_input() -> None:
    modal.Secret.objects.create("e2e-other", {"K": "v"})
    with pytest.raises(AlreadyExistsError, match="--force"):
        modal.Secret.objects.create("e2e-other", {"K": "v2"})
    assert "e2e-other" in {s.name for s in modal.Secret.objects.list()}
    modal.Secret.objects.delete("e2e-other")
    with pytest.raises(InvalidError, match="not a valid environment variable"):
        modal.Secret.objects.create("e2e-bad", {"1BAD": "x"})
    with pytest.raises(InvalidError, match="name"):
        modal.Secret.from_name("bad name!")
    with pytest.raises(InvalidError, match=r"modal\.Secret"):
        modal.App("x", secrets=[{"A": "b"}])


# ---- volumes -----------------------------------------------------------------------------------


@needs_root
def test_volume_commit_reload_and_delete_between_containers() -> None:
    storage.write_files.remote({"a.txt": "one", "dir/b.txt": "two"})
    assert storage.read_files.remote(["a.txt", "dir/b.txt"]) == {"a.txt": "one", "dir/b.txt": "two"}
    # From outside a container the same committed state is visible.
    assert b"".join(storage.vol.read_file("dir/b.txt")) == b"two"
    names = {e.path for e in storage.vol.listdir("/", recursive=True)}
    assert {"a.txt", "dir", "dir/b.txt"} <= names
    storage.remove_and_commit.remote("a.txt")
    assert storage.read_files.remote(["a.txt"]) == {"a.txt": None}
    assert "volume busy" in storage.reload_while_open.remote("busy.txt")


@needs_root
def test_uncommitted_writes_are_not_seen_until_commit() -> None:
    storage.write_files.remote({"draft.txt": "not yet"}, commit=False)
    assert storage.read_files.remote(["draft.txt"]) == {"draft.txt": None}


def test_volume_api_from_outside(tmp_path: Path) -> None:
    vol = modal.Volume.from_name("e2e-local-vol", create_if_missing=True)
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "x.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (tmp_path / "tree" / "sub" / "y.txt").write_text("y")
    with vol.batch_upload() as batch:
        batch.put_directory(tmp_path / "tree", "/up")
        batch.put_file(io.BytesIO(b"bytes"), "/single.txt")
    with pytest.raises(AlreadyExistsError, match=r"single\.txt"), vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"again"), "/single.txt")
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"again"), "/single.txt")
    assert b"".join(vol.read_file("/single.txt")) == b"again"
    out = io.BytesIO()
    assert vol.read_file_into_fileobj("up/x.bin", out) == 3 * 1024 * 1024
    assert out.getvalue() == (tmp_path / "tree" / "x.bin").read_bytes()
    vol.copy_files(["/up/sub"], "/copied", recursive=True)
    assert b"".join(vol.read_file("copied/y.txt")) == b"y"
    listing = vol.listdir("/up")
    assert [(e.path, e.type) for e in listing] == [("up/sub", modal.volume.FileEntryType.DIRECTORY),
                                                  ("up/x.bin", modal.volume.FileEntryType.FILE)]
    with pytest.raises(InvalidError, match="not empty"):
        vol.remove_file("/up")
    vol.remove_file("/up", recursive=True)
    with pytest.raises(NotFoundError, match=r"up/x\.bin"):
        list(vol.read_file("/up/x.bin"))
    with pytest.raises(InvalidError, match=r"\.\."):
        vol.listdir("/../etc")
    with pytest.raises(InvalidError, match="inside a container"):
        vol.commit()
    with pytest.raises(NotFoundError, match="skylift volume create"):
        modal.Volume.from_name("e2e-no-such-volume").listdir("/")


# ---- dicts and queues --------------------------------------------------------------------------


def test_dict_from_local_code() -> None:
    d = modal.Dict.from_name("e2e-local-dict", create_if_missing=True)
    d.clear()
    d["a"] = 1
    d[("tuple", 2)] = [1, 2]
    assert d["a"] == 1 and d.get("missing", "dflt") == "dflt" and "a" in d and d.contains(("tuple", 2))
    assert d.put("lock", "me", skip_if_exists=True) is True
    assert d.put("lock", "you", skip_if_exists=True) is False and d["lock"] == "me"
    d.update({"b": 2}, c=3)
    assert len(d) == 5 and d.len() == 5
    assert list(d.keys()) == ["a", ("tuple", 2), "lock", "b", "c"]
    assert dict(d.items())["c"] == 3 and sorted(map(str, d.values()))[0] == "1"
    assert d.pop("a") == 1 and d.pop("a", None) is None
    with pytest.raises(KeyError):
        d["a"]
    with pytest.raises(KeyError):
        del d["a"]
    with pytest.raises(SerializationError):
        d["lock"] = threading.Lock()
    assert d["lock"] == "me"  # a failed put changes nothing
    d.clear()
    assert len(d) == 0
    with pytest.raises(NotFoundError, match="create_if_missing=True"):
        modal.Dict.from_name("e2e-no-such-dict").get("x")


def test_ephemeral_objects_die_with_their_block() -> None:
    with modal.Dict.ephemeral() as d:
        d["x"] = 1
        object_id = d.object_id
        assert modal.Dict.from_id(object_id)["x"] == 1
    with pytest.raises(NotFoundError):
        modal.Dict.from_id(object_id).get("x")
    with modal.Queue.ephemeral() as q:
        q.put(1)
        assert q.get() == 1


def test_queue_from_local_code() -> None:
    q = modal.Queue.from_name("e2e-local-queue", create_if_missing=True)
    q.clear(all=True)
    q.put(1)
    q.put_many([2, 3])
    q.put("p", partition="part")
    assert q.len() == 3 and q.len(partition="part") == 1 and q.len(total=True) == 4
    assert list(q.iterate()) == [1, 2, 3] and q.len() == 3  # iterate doesn't consume
    assert q.get() == 1 and q.get_many(5) == [2, 3]
    assert q.get(block=False) is None and q.get_many(2, block=False) == []
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    assert q.get(partition="part") == "p"
    with pytest.raises(InvalidError, match="partition key"):
        q.put(1, partition="x" * 65)
    with pytest.raises(RequestSizeError, match="1 MiB"):
        q.put(b"x" * (1024 * 1024 + 1))
    q.put_many(list(range(5000)), partition="full")
    with pytest.raises(queue.Full):
        q.put(1, partition="full", block=False)
    with pytest.raises(queue.Full):
        q.put(1, partition="full", timeout=0.2)
    q.clear(partition="full")
    assert q.len(partition="full") == 0


def test_objects_pass_into_containers() -> None:
    storage.shared["local-key"] = "from local"
    with modal.Dict.ephemeral() as d, modal.Queue.ephemeral() as q:
        assert storage.use_dict_and_queue.remote("k1", d, q) == ("from local", True)
        assert d["k1"] == {"from": "container"}
        assert q.get(timeout=5) == ("done", "k1")


def test_blocked_get_in_a_container_wakes_promptly() -> None:
    storage.jobs.clear(partition="wake")
    storage.read_env.remote([])  # any container up: the next cold start doesn't count against the wait
    call = storage.wait_for_item.spawn(30)
    time.sleep(1.5)
    put_at = time.monotonic()
    storage.jobs.put("wake up", partition="wake")
    item, waited = call.get(timeout=30)
    assert item == "wake up"
    assert time.monotonic() - put_at < 1.0, "the blocked get took too long to see the item"
    assert waited > 0.5


def test_object_lists() -> None:
    names = {d.name for d in modal.Dict.objects.list()}
    assert {"e2e-dict", "e2e-local-dict"} <= names
    modal.Queue.objects.create("e2e-made", allow_existing=True)
    with pytest.raises(AlreadyExistsError):
        modal.Queue.objects.create("e2e-made")
    modal.Queue.objects.delete("e2e-made")
    modal.Queue.objects.delete("e2e-made", allow_missing=True)


def test_aio_variants() -> None:
    async def go() -> list[bytes]:
        async with modal.Dict.ephemeral() as d:
            await d.put.aio("a", 1)
            assert await d.get.aio("a") == 1 and await d.len.aio() == 1
            assert [k async for k in d.keys.aio()] == ["a"]
        async with modal.Queue.ephemeral() as q:
            await q.put_many.aio([1, 2])
            assert [x async for x in q.iterate.aio()] == [1, 2]
            assert await q.get_many.aio(5) == [1, 2]
        vol = modal.Volume.from_name("e2e-aio-vol", create_if_missing=True)
        async with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(b"z"), "/z")
        return [chunk async for chunk in vol.read_file.aio("/z")]

    import asyncio

    assert asyncio.run(go()) == [b"z"]


def test_two_mounts_last_write_wins_and_reload(tmp_path: Path) -> None:
    """The container-side commit and reload, run from here on two directories of one volume."""
    from skylift._client import Client, run_sync
    from skylift._volumes import files as _volume_files
    from skylift._volumes.mount import MountedVolume, commit, reload

    vol = modal.Volume.from_name("e2e-two-mounts", create_if_missing=True)
    client = Client.from_env()
    mounts = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        _volume_files.write_base(tmp_path / f"{name}.base", 0, {})
        mounts.append(MountedVolume("/data", vol.object_id, tmp_path / name, tmp_path / f"{name}.base"))
    a, b = mounts
    (a.dir / "x.txt").write_text("from a")
    (a.dir / "only-a.txt").write_text("a")
    assert run_sync(commit(client, a)) == 2
    (b.dir / "x.txt").write_text("from b")  # b never saw a's x: last write wins
    assert run_sync(commit(client, b)) == 1
    run_sync(reload(client, a))  # a's x was committed moments ago: still replaced by b's newer one
    assert (a.dir / "x.txt").read_text() == "from b"
    (b.dir / "x.txt").unlink()  # b deletes x, which it knew; only-a.txt it never saw stays
    assert run_sync(commit(client, b)) == 1
    assert {e.path for e in vol.listdir("/")} == {"only-a.txt"}
    (a.dir / "draft.txt").write_text("uncommitted")
    run_sync(reload(client, a))
    assert not (a.dir / "x.txt").exists() and (a.dir / "draft.txt").read_text() == "uncommitted"
