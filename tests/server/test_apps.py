"""Apps and functions: create, deploy, publish versions, find, stop."""

from __future__ import annotations

import asyncio

import pytest

from conftest import definition
from skylift._protocol import api
from skylift._protocol.rpc import RpcError


async def _deploy(client, name: str, *defs, tag: str | None = None, commit_info: str | None = None):
    app_id = (await client.call("app.deploy_begin", {"name": name, "environment": "main"}))["app_id"]
    ids = {}
    for d in defs:
        ids[d["tag"]] = (await client.call("function.create", {"app_id": app_id, "definition": d}))["function_id"]
    published = await client.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": ids,
                                                  "tag": tag, "commit_info": commit_info})
    return app_id, ids, published["version"]


async def test_deploys_make_versions_and_keep_function_ids_stable(platform):
    async with platform() as h:
        client = await h.client()
        app1, ids1, v1 = await _deploy(client, "shop", definition("f"), definition("g"), tag="first")
        app2, ids2, v2 = await _deploy(client, "shop", definition("f", timeout=10), definition("g"),
                                       commit_info="abc123")
        assert (app1, v1) == (app2, 1) and v2 == 2 and ids1 == ids2
        history = await client.call("app.history", {"name": "shop", "environment": "main"})
        assert [(v["version"], v["tag"], v["commit_info"], v["function_tags"]) for v in history["versions"]] == [
            (1, "first", None, ["f", "g"]), (2, None, "abc123", ["f", "g"])]
        found = await client.call("app.lookup", {"name": "shop", "environment": "main"})
        assert found == {"app_id": app1, "state": "deployed", "function_tags": ["f", "g"]}
        got = await client.call("function.get", {"app_name": "shop", "tag": "f", "environment": "main"})
        assert got["function_id"] == ids1["f"] and got["definition"]["timeout"] == 10
        pinned = await client.call("function.get", {"app_name": "shop", "tag": "g", "environment": "main",
                                                    "version": 1})
        assert pinned["function_id"] == ids1["g"]


async def test_environments_keep_apps_apart(platform):
    async with platform() as h:
        client = await h.client()
        await _deploy(client, "svc", definition("f"))
        with pytest.raises(RpcError) as err:
            await client.call("app.lookup", {"name": "svc", "environment": "staging"})
        assert err.value.code == "not_found" and "'staging'" in err.value.message
        apps = await client.call("app.list", {"environment": "staging"})
        assert apps["apps"] == []


async def test_function_get_names_the_app_and_its_functions_when_missing(platform):
    async with platform() as h:
        client = await h.client()
        await _deploy(client, "shop", definition("checkout"), definition("refund"))
        with pytest.raises(RpcError) as err:
            await client.call("function.get", {"app_name": "shop", "tag": "nope", "environment": "main"})
        assert err.value.code == "not_found"
        assert err.value.message == "app 'shop' has no function 'nope'; its functions are: checkout, refund"
        with pytest.raises(RpcError) as err:
            await client.call("function.get", {"app_name": "nosuch", "tag": "f", "environment": "main"})
        assert "app 'nosuch' not found in environment 'main'" in err.value.message


async def test_a_redeploy_drains_old_containers_and_new_ones_get_the_new_code(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, ids, _ = await _deploy(client, "svc", definition("f", env={"V": "1"}))
        await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"}, "timeout": 0})
        old = await h.started_container(worker)
        assert (await old.init())["definition"]["env"] == {"V": "1"}
        [inp] = await old.next_inputs()
        await old.put(inp)
        # function.create alone changes nothing: the new code goes live at app.publish.
        app_id = (await client.call("app.deploy_begin", {"name": "svc", "environment": "main"}))["app_id"]
        fid = (await client.call("function.create", {"app_id": app_id, "definition": definition("f", env={"V": "2"})}))
        assert fid["function_id"] == ids["f"]
        assert (await old.heartbeat())["stop"] is False
        await client.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": ids})
        assert (await old.heartbeat())["stop"] is True
        run = asyncio.ensure_future(client.call("call.run", {"function_id": ids["f"], "input": {"args": b"y"},
                                                             "timeout": 10}))
        new = await h.started_container(worker)
        assert (await new.init())["definition"]["env"] == {"V": "2"}
        [inp] = await new.next_inputs()
        await new.put(inp, data=b"v2")
        assert (await run)["output"]["data"] == b"v2"


async def test_app_list_counts_containers_and_stop_ends_everything(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        app_id, ids = await h.app(client, name="job")
        started = await client.call("call.start", {"function_id": ids["f"], "invocation": "async", "kind": "unary",
                                                   "inputs": [{"args": b"x"}]})
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        listed = {a["app_id"]: a for a in (await client.call("app.list", {"environment": "main"}))["apps"]}
        assert listed[app_id]["n_containers"] == 1 and listed[app_id]["state"] == "detached"
        await client.call("app.stop", {"name": "job", "environment": "main"})
        got = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": False})
        assert got["outputs"][0]["status"] == api.STATUS_TERMINATED and "stopped" in got["outputs"][0]["exc_message"]
        assert (await container.heartbeat([inp["input_id"]])) == {"cancel_input_ids": [inp["input_id"]], "stop": True}
        with pytest.raises(RpcError) as err:
            await client.call("call.run", {"function_id": ids["f"], "input": {"args": b"x"}, "timeout": 1})
        assert err.value.code == "not_found" and "stopped" in err.value.message
        with pytest.raises(RpcError):
            await client.call("app.lookup", {"name": "job", "environment": "main"})
        listed = {a["app_id"]: a for a in (await client.call("app.list", {"environment": "main"}))["apps"]}
        assert listed[app_id]["state"] == "stopped" and listed[app_id]["stopped_at"]


async def test_an_ephemeral_app_without_heartbeats_is_stopped(platform):
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        app_id, ids = await h.app(client, state="ephemeral")
        started = await client.call("call.start", {"function_id": ids["f"], "invocation": "sync", "kind": "map",
                                                   "inputs": [{"args": b"x"}]})
        container = await h.started_container(worker)
        h.advance(20)
        await client.call("app.heartbeat", {"app_id": app_id})
        h.advance(20)
        await asyncio.sleep(0.1)
        assert (await container.heartbeat())["stop"] is False
        h.advance(h.cp.settings.app_heartbeat_timeout + 1)
        got = await client.call("call.get_outputs", {"call_id": started["call_id"], "timeout": 5, "clear": True})
        assert got["outputs"][0]["status"] == api.STATUS_TERMINATED and got["done"]
        assert (await container.heartbeat())["stop"] is True


async def test_disconnect_ends_an_ephemeral_app_but_not_a_detached_one(platform):
    async with platform() as h:
        client = await h.client()
        ephemeral, _ = await h.app(client, name="e", state="ephemeral")
        detached, _ = await h.app(client, name="d", state="detached")
        for app_id in (ephemeral, detached):
            await client.call("app.disconnect", {"app_id": app_id, "reason": "local entrypoint done"})
        states = {a["app_id"]: a["state"] for a in (await client.call("app.list", {"environment": "main"}))["apps"]}
        assert states == {ephemeral: "stopped", detached: "detached"}


async def test_publish_rejects_functions_of_other_apps(platform):
    async with platform() as h:
        client = await h.client()
        _, other = await h.app(client, name="other")
        app_id = (await client.call("app.create", {"environment": "main", "state": "ephemeral"}))["app_id"]
        with pytest.raises(RpcError) as err:
            await client.call("app.publish", {"app_id": app_id, "state": "ephemeral", "function_ids": other})
        assert err.value.code == "invalid" and "function_ids['f']" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": {}})
        assert err.value.code == "invalid" and "deploy_begin" in err.value.message


async def test_function_create_validates_the_definition(platform):
    async with platform() as h:
        client = await h.client()
        app_id = (await client.call("app.create", {"environment": "main", "state": "ephemeral"}))["app_id"]
        for bad, words in [(definition(timeout=0), "timeout"), (definition(resources={"gpu": "A100:x"}), "gpu"),
                           ({"no": "tag"}, "'tag'"), (definition(autoscaler={"min_containers": -1}), "min_containers")]:
            with pytest.raises(RpcError) as err:
                await client.call("function.create", {"app_id": app_id, "definition": bad})
            assert err.value.code == "invalid" and words in err.value.message, err.value.message
