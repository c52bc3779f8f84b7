"""app.info, function.info and secret.update: what App.info, Function.from_id/info and Secret.update read."""

from __future__ import annotations

import pytest

from conftest import definition
from skylift._protocol.rpc import RpcError


async def test_app_and_function_info(platform):
    async with platform() as h:
        client = await h.client()
        app_id = (await client.call("app.deploy_begin", {"name": "shop", "environment": "main"}))["app_id"]
        fid = (await client.call("function.create", {"app_id": app_id, "definition": definition("f", timeout=12)}
                                 ))["function_id"]
        await client.call("app.publish", {"app_id": app_id, "state": "deployed", "function_ids": {"f": fid}})
        info = await client.call("app.info", {"app_id": app_id})
        assert info["name"] == "shop" and info["state"] == "deployed" and info["function_ids"] == {"f": fid}
        assert info["version"] == 1 and info["stopped_at"] is None and info["deployed_at"] >= info["created_at"]
        got = await client.call("function.info", {"function_id": fid})
        assert (got["app_id"], got["app_name"], got["tag"]) == (app_id, "shop", "f")
        assert got["definition"]["timeout"] == 12
        await client.call("app.stop", {"app_id": app_id})
        stopped = await client.call("app.info", {"app_id": app_id})
        assert stopped["state"] == "stopped" and stopped["function_ids"] == {} and stopped["stopped_at"]
        with pytest.raises(RpcError) as err:
            await client.call("function.info", {"function_id": "fu-nope"})
        assert err.value.code == "not_found"


async def test_secret_update_merges_named_secrets_only(platform):
    async with platform() as h:
        client = await h.client()
        sid = (await client.call("secret.create", {"name": "db", "environment": "main",
                                                   "values": {"A": "1", "B": "2"}}))["object_id"]
        await client.call("secret.update", {"secret_id": sid, "values": {"B": "3", "C": "4"}})
        env, missing = h.cp.storage.secrets.env_for([sid])
        assert env == {"A": "1", "B": "3", "C": "4"} and missing == []
        anon = (await client.call("secret.create", {"environment": "main", "values": {"X": "1"}}))["object_id"]
        with pytest.raises(RpcError, match="anonymous"):
            await client.call("secret.update", {"secret_id": anon, "values": {"X": "2"}})
        with pytest.raises(RpcError, match="not a valid environment variable"):
            await client.call("secret.update", {"secret_id": sid, "values": {"1bad": "x"}})


async def test_object_rename_keeps_id_and_contents(platform):
    async with platform() as h:
        client = await h.client()
        got = await client.call("object.get", {"kind": "volume", "name": "v1", "environment": "main",
                                               "create_if_missing": True})
        await client.call("object.get", {"kind": "volume", "name": "taken", "environment": "main",
                                         "create_if_missing": True})
        renamed = await client.call("object.rename", {"kind": "volume", "name": "v1", "new_name": "v2",
                                                      "environment": "main"})
        assert renamed["object_id"] == got["object_id"]
        again = await client.call("object.get", {"kind": "volume", "name": "v2", "environment": "main"})
        assert again["object_id"] == got["object_id"]
        with pytest.raises(RpcError) as err:
            await client.call("object.get", {"kind": "volume", "name": "v1", "environment": "main"})
        assert err.value.code == "not_found"
        with pytest.raises(RpcError) as err:
            await client.call("object.rename", {"kind": "volume", "name": "v2", "new_name": "taken",
                                                "environment": "main"})
        assert err.value.code == "conflict" and "'taken'" in err.value.message
