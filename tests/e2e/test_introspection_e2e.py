"""App/Function/FunctionCall introspection, Secret.update, Volume.rename/read_only and
modal.experimental against a real platform (issue 11, item 4)."""

from __future__ import annotations

import datetime
import io

import pytest
from apps import introspection

import skylift as modal
from skylift import experimental
from skylift.exception import InvalidError, NotFoundError


def test_deployed_app_introspection(platform: object) -> None:
    seed = modal.Volume.from_name("e2e-introspection-ro", create_if_missing=True)
    with seed.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"seed"), "/seed.txt")
    introspection.app.deploy()
    app = modal.App.lookup("e2e-introspection")
    info = app.info()
    assert info.app_id == app.app_id and info.lifecycle.state == modal.types.AppState.DEPLOYED
    assert set(info.functions) >= {"square", "read_only_write", "Counter"}

    fn = modal.Function.from_id(info.functions["square"])
    assert fn.remote(7) == 49
    finfo = fn.info()
    assert finfo.timeout == 77 and finfo.method_names is None

    # A read-only mount: files readable, writes and commits refused; env None values left out.
    assert modal.Function.from_name("e2e-introspection", "read_only_write").remote() == \
        "seed|refused|commit refused|-"

    # Cls.from_name(...)() takes the declared defaults.
    assert modal.Cls.from_name("e2e-introspection", "Counter")().value.remote() == 5

    call = fn.experimental_spawn_map([1, 2, 3, 4])
    assert list(call.iter()) == [1, 4, 9, 16] and list(call.iter(start=1, end=3)) == [4, 9]
    assert modal.FunctionCall.from_id(call.object_id).hydrate() is not None

    objects = experimental.get_app_objects("e2e-introspection")
    assert isinstance(objects["square"], modal.Function) and isinstance(objects["Counter"], modal.Cls)
    assert any(a.name == "e2e-introspection" for a in experimental.list_deployed_apps())
    life = experimental.get_app_lifecycle(app.app_id)
    assert life.version and life.deployed_at and life.deployed_at >= life.created_at and life.stopped_at is None

    # stop_fetching_inputs: the container ends after this input; the next call gets another one.
    stopper = modal.Function.from_name("e2e-introspection", "stop_after_this")
    assert stopper.remote() != stopper.remote()

    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    lines = [e.message for e in fn.logs.fetch(since=since)]
    assert any("squaring 7" in line for line in lines)
    assert any("squaring" in e.message for e in app.logs.tail(1000))

    app.stop()
    with pytest.raises(NotFoundError):
        modal.Function.from_name("e2e-introspection", "square").remote(1)


def test_secret_update_and_volume_rename(platform: object) -> None:
    modal.Secret.objects.create("e2e-upd", {"A": "1"}, allow_existing=True)
    secret = modal.Secret.from_name("e2e-upd")
    secret.update({"B": "2"})
    with pytest.raises(InvalidError, match="anonymous"):
        modal.Secret.from_dict({"X": "1"}).update({"X": "2"})
    modal.Volume.objects.create("e2e-before-rename", allow_existing=True)
    vid = modal.Volume.from_name("e2e-before-rename").object_id
    modal.Volume.rename("e2e-before-rename", "e2e-after-rename")
    assert modal.Volume.from_name("e2e-after-rename").object_id == vid
    with pytest.raises(NotFoundError):
        modal.Volume.from_name("e2e-before-rename").hydrate()


def test_context_managers_have_aio_forms(platform: object) -> None:
    import asyncio

    async def main() -> tuple[int, bytes]:
        async with modal.Dict.ephemeral.aio() as d:
            await d.put.aio("k", 1)
            value = await d.get.aio("k")
        async with modal.Volume.ephemeral.aio(version=2) as vol:
            async with vol.batch_upload.aio() as batch:
                batch.put_file(io.BytesIO(b"hi"), "/a.txt")
            data = b"".join([chunk async for chunk in vol.read_file.aio("/a.txt")])
        return value, data

    assert asyncio.run(main()) == (1, b"hi")
    with modal.Queue.ephemeral() as q:
        q.put(3)
        assert q.get() == 3
