"""Who may connect and call what; bad requests get clear errors and never wedge the server."""

from __future__ import annotations

import hashlib

import pytest

from conftest import definition
from skylift._protocol import api
from skylift._protocol.rpc import RpcError


async def test_a_bad_admin_token_is_rejected(platform):
    async with platform() as h:
        with pytest.raises(RpcError) as err:
            await h.connect(token="not-the-token")
        assert err.value.code == "auth" and "invalid token" in err.value.message
        with pytest.raises(RpcError) as err:
            await h.connect(role="superuser")
        assert err.value.code == "auth" and "role" in err.value.message


async def test_container_tokens_are_per_task(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids = await h.app(client)
        await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"}, "timeout": 0})
        spec = (await worker.next("start_task"))["task"]
        with pytest.raises(RpcError) as err:
            await h.connect(api.ROLE_CONTAINER, token=h.cp.token, task_id=spec["task_id"])
        assert err.value.code == "auth"
        with pytest.raises(RpcError) as err:
            await h.connect(api.ROLE_CONTAINER, token=spec["token"], task_id="ta-unknown")
        assert err.value.code == "auth" and "ta-unknown" in err.value.message
        container = await h.container(spec)
        assert (await container.init())["task_id"] == spec["task_id"]
        # Containers may call client methods (a function calling another)...
        assert (await container.rpc.call("app.lookup", {"name": "test-app", "environment": "main"}))["app_id"]
        # ...but not the admin-only ones, nor another role's.
        for method in ("server.shutdown", "worker.poll"):
            with pytest.raises(RpcError) as err:
                await container.rpc.call(method, {})
            assert err.value.code == "auth"
        # Once its task exits the token is dead.
        await worker.report(spec["task_id"], "exited", exit_code=0)
        with pytest.raises(RpcError) as err:
            await h.connect(api.ROLE_CONTAINER, token=spec["token"], task_id=spec["task_id"])
        assert err.value.code == "auth"


async def test_roles_limit_methods(platform):
    async with platform() as h:
        client = await h.client()
        for method in ("container.get_inputs", "worker.register"):
            with pytest.raises(RpcError) as err:
                await client.call(method, {})
            assert err.value.code == "auth" and repr(method) in err.value.message


async def test_malformed_params_name_the_method_and_the_field(platform):
    async with platform() as h:
        client = await h.client()
        cases = [
            ("app.create", {"environment": "main", "state": "forever"}, "app.create: field 'state'"),
            ("app.create", {"environment": 7}, "app.create: field 'environment' must be a string"),
            ("call.start", {"inputs": []}, "call.start: field 'function_id' must be a string, got nothing"),
            ("call.get_outputs", {"call_id": "fc-x", "timeout": "soon"}, "call.get_outputs: field 'timeout'"),
            ("app.logs", {"app_id": "ap-x", "after_seq": "0"}, "app.logs: field 'after_seq' must be an integer"),
            ("blob.put", {"sha256": "../../etc/passwd", "data": b""}, "blob.put: '../../etc/passwd' is not a sha256"),
            ("image.build", {"image": {"layers": "no"}}, "image.build: field 'image'"),
        ]
        for method, params, message in cases:
            with pytest.raises(RpcError) as err:
                await client.call(method, params)
            assert err.value.code == "invalid", (method, err.value)
            assert err.value.message.startswith(message), err.value.message


async def test_unknown_ids_are_not_found(platform):
    async with platform() as h:
        client = await h.client()
        for method, params, words in [
            ("call.info", {"call_id": "fc-nope"}, "fc-nope"),
            ("call.get_outputs", {"call_id": "fc-nope", "timeout": 0, "clear": False}, "fc-nope"),
            ("call.cancel", {"call_id": "fc-nope"}, "fc-nope"),
            ("function.stats", {"function_id": "fu-nope"}, "fu-nope"),
            ("app.heartbeat", {"app_id": "ap-nope"}, "ap-nope"),
            ("image.status", {"image_id": "im-nope", "log_offset": 0, "timeout": 0}, "im-nope"),
            ("blob.get", {"sha256": hashlib.sha256(b"nothing").hexdigest()}, "no blob"),
        ]:
            with pytest.raises(RpcError) as err:
                await client.call(method, params)
            assert err.value.code == "not_found" and words in err.value.message, (method, err.value)


async def test_a_handler_bug_answers_internal_and_the_server_goes_on(platform, monkeypatch, capsys):
    async with platform() as h:
        client = await h.client()
        await h.app(client, definition(), name="svc")

        def broken(name: str, environment: str) -> None:
            raise RuntimeError("bug in the handler")

        monkeypatch.setattr(h.cp.catalog, "find_running", broken)
        with pytest.raises(RpcError) as err:
            await client.call("app.lookup", {"name": "svc", "environment": "main"})
        assert err.value.code == "internal" and "bug in the handler" in err.value.message
        monkeypatch.undo()
        assert (await client.call("app.lookup", {"name": "svc", "environment": "main"}))["function_tags"] == ["f"]
        assert "bug in the handler" in capsys.readouterr().err


async def test_blobs_are_content_addressed_and_verified(platform):
    async with platform() as h:
        client = await h.client()
        data = b"print('hello')\n"
        digest = hashlib.sha256(data).hexdigest()
        other = hashlib.sha256(b"other").hexdigest()
        assert (await client.call("blob.missing", {"hashes": [digest, other]}))["missing"] == [digest, other]
        with pytest.raises(RpcError) as err:
            await client.call("blob.put", {"sha256": other, "data": data})
        assert err.value.code == "invalid" and "hashes to" in err.value.message
        await client.call("blob.put", {"sha256": digest, "data": data})
        assert (await client.call("blob.missing", {"hashes": [digest, other]}))["missing"] == [other]
        assert (await client.call("blob.get", {"sha256": digest}))["data"] == data
        assert (h.cp.home / "blobs" / digest[:2] / digest).read_bytes() == data
