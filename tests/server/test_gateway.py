"""The web gateway against a real control plane, with a fake container answering over the protocol."""

from __future__ import annotations

import asyncio
import pickle
import urllib.error
import urllib.request
from typing import Any

import pytest

from conftest import definition
from skylift._protocol import api, web_request
from skylift._protocol.rpc import RpcError
from skylift.server.execution.catalog import AppEntry, AppState
from skylift.server.http.web_routes import endpoint_label, shorten, slugify

WEB = {"type": "asgi", "label": None, "requires_proxy_auth": False}


def test_labels_follow_modal() -> None:
    app = AppEntry("ap-1", "My_Shop", "main", AppState.DEPLOYED, 0.0)
    assert endpoint_label(app, "Web_App", None, WEB) == "main-my-shop-web-app"
    assert endpoint_label(app, "Model", "predict", WEB) == "main-my-shop-model-predict"
    assert endpoint_label(app, "f", None, {**WEB, "label": "api"}) == "main-api"
    app.state = AppState.EPHEMERAL
    assert endpoint_label(app, "f", None, WEB) == "main-my-shop-f-dev"
    long = "x" * 70
    assert len(shorten(long)) == 63 and shorten(long).startswith("x" * 56 + "-")
    assert shorten("short") == "short"
    assert slugify("--A  b__c--") == "a-b-c"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}


async def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    return await asyncio.to_thread(_get, url)


async def _web_app(client: Any, name: str, state: str = "deployed", **web: Any) -> tuple[str, dict[str, Any]]:
    d = definition("web", web={**WEB, **web})
    if state == "deployed":
        app_id = (await client.call("app.deploy_begin", {"name": name, "environment": "main"}))["app_id"]
    else:
        app_id = (await client.call("app.create", {"name": name, "environment": "main", "state": state}))["app_id"]
    got = await client.call("function.create", {"app_id": app_id, "definition": d})
    await client.call("app.publish", {"app_id": app_id, "state": state, "function_ids": {"web": got["function_id"]}})
    return app_id, got


async def test_duplicate_labels_are_refused_at_deploy(platform: Any) -> None:
    async with platform() as h:
        client = await h.client()
        await _web_app(client, "one", label="shared")
        with pytest.raises(RpcError, match="'main-shared' is already used by web of app 'one'"):
            await _web_app(client, "two", label="shared")
        with pytest.raises(RpcError, match="label 'Bad_Label' is invalid"):
            await _web_app(client, "three", label="Bad_Label")
        _, got = await _web_app(client, "four", state="ephemeral", label="shared")  # -dev: no clash
        assert got["web_urls"][""].endswith("/main-shared-dev")


async def test_slow_request_redirects_to_a_result_url(platform: Any) -> None:
    async with platform() as h:
        h.cp.gateway.config.timeout = 0.5
        client = await h.client()
        worker = await h.worker()
        _, got = await _web_app(client, "slow")
        url = got["web_urls"][""]
        request = asyncio.get_running_loop().create_task(get(url + "/path?q=1"))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        (packed,), _ = pickle.loads(inp["args"])
        scope, _, _ = web_request.unpack(packed)
        assert (scope["method"], scope["path"], scope["root_path"], scope["query_string"]) == (
            "GET", "/main-slow-web/path", "/main-slow-web", b"q=1")
        status, _, headers = await request
        assert status == 303 and headers["location"].startswith("/__skylift/calls/fc-")
        result_url = url.rsplit("/", 1)[0] + headers["location"]
        pending = asyncio.get_running_loop().create_task(get(result_url))
        await container.rpc.call("container.web_send", {"input_id": inp["input_id"], "messages": [
            {"type": "http.response.start", "status": 201, "headers": [[b"x-app", b"yes"]]},
            {"type": "http.response.body", "body": b"done late", "more_body": False}]})
        await container.put(inp)
        status, body, headers = await pending
        assert (status, body, headers.get("x-app")) == (201, b"done late", "yes"), headers
        assert (await get(result_url))[0] == 404  # fetched once


async def test_failures_map_to_status_codes(platform: Any) -> None:
    async with platform() as h:
        client = await h.client()
        worker = await h.worker()
        _, got = await _web_app(client, "failing")
        url = got["web_urls"][""]
        assert (await get(url.rsplit("/", 1)[0] + "/main-nothing-here"))[0] == 404
        request = asyncio.get_running_loop().create_task(get(url))
        container = await h.started_container(worker)
        [inp] = await container.next_inputs()
        await container.put(inp, api.STATUS_FAILURE, exc_type="ValueError", exc_message="secret detail",
                            traceback="Traceback ...")
        status, body, _ = await request
        assert status == 500 and b"secret detail" not in body and b"Traceback" not in body
        request = asyncio.get_running_loop().create_task(get(url))
        [inp] = await container.next_inputs()
        await container.put(inp)  # the app returned without a response
        assert (await request)[0] == 500
