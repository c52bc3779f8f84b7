"""Web endpoints over real HTTP through the control plane's gateway."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from apps import web

import skylift as modal
from skylift.exception import InvalidError


@pytest.fixture(scope="module")
def served(platform: object) -> Iterator[None]:
    with web.app.run():
        yield


def get(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
        method: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_fastapi_endpoint_query_params(served: None) -> None:
    url = web.hello.get_web_url()
    assert url is not None and url.endswith("/main-e2e-web-hello-dev")
    status, body, _ = get(url + "?name=ada")
    assert (status, json.loads(body)) == (200, {"hello": "ada"})


def test_fastapi_pydantic_body_and_docs(served: None) -> None:
    url = web.create_item.get_web_url()
    assert url is not None and url.endswith("/main-e2e-items-dev")
    payload = json.dumps({"name": "pen", "price": 1.5, "quantity": 4}).encode()
    status, body, _ = get(url, data=payload, headers={"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (200, {"name": "pen", "total": 6.0})
    status, body, _ = get(url, data=b'{"name": 3}', headers={"Content-Type": "application/json"})
    assert status == 422
    status, body, _ = get(url + "/docs")
    assert status == 200 and b"swagger" in body.lower()


def test_host_routing(served: None) -> None:
    url = web.hello.get_web_url()
    assert url is not None
    parts = urlsplit(url)
    label = parts.path.strip("/")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", "/?name=host", headers={"Host": f"{label}.localhost:{parts.port}"})
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"hello": "host"})
    finally:
        conn.close()


def test_unknown_label_is_404(served: None) -> None:
    base = (web.hello.get_web_url() or "").rsplit("/", 1)[0]
    status, body, _ = get(base + "/main-no-such-endpoint/x")
    assert status == 404 and b"no-such-endpoint" in body


def test_web_functions_reject_remote(served: None) -> None:
    with pytest.raises(InvalidError, match="web endpoint"):
        web.hello.remote()
    with pytest.raises(InvalidError, match="web endpoint"):
        web.Greeter().greet.remote()
    assert web.Greeter().plain.remote() == "plain"


def test_raising_endpoint_is_500_without_traceback(served: None) -> None:
    from skylift._client import Client, run_sync

    status, body, _ = get(web.boom.get_web_url() or "")
    assert status == 500
    assert b"kaboom" not in body and b"Traceback" not in body
    deadline = time.monotonic() + 10
    logged = ""
    while "kaboom" not in logged and time.monotonic() < deadline:  # the traceback is in the app's logs
        got = run_sync(Client.from_env().call("app.logs", {"app_id": web.app.app_id, "after_seq": 0, "timeout": 1}))
        logged = "".join(e["text"] for e in got["entries"])
    assert "ValueError: kaboom in the endpoint" in logged


def test_asgi_app_streams_server_sent_events(served: None) -> None:
    parts = urlsplit(web.api.get_web_url() or "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        response = _events(conn, parts.path)
    finally:
        conn.close()
    assert response[0] == 200
    assert response[1].startswith("text/event-stream")
    lines, arrivals = response[2], response[3]
    assert lines == [b"data: 0", b"data: 1", b"data: 2"]
    assert arrivals[-1] - arrivals[0] > 0.3  # events arrived as they were produced, not at the end


def _events(conn: http.client.HTTPConnection, path: str) -> tuple[int, str, list[bytes], list[float]]:
    conn.request("GET", path + "/events?n=3")
    response = conn.getresponse()
    arrivals: list[float] = []
    lines: list[bytes] = []
    while len(lines) < 3:
        line = response.fp.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            arrivals.append(time.monotonic())
            lines.append(line.strip())
    return response.status, response.getheader("content-type", ""), lines, arrivals


def test_asgi_app_streams_a_large_upload(served: None) -> None:
    url = (web.api.get_web_url() or "") + "/upload"
    size = 8 * 1024 * 1024 + 123
    status, body, _ = get(url, data=b"x" * size, headers={"Content-Type": "application/octet-stream"})
    got = json.loads(body)
    assert status == 200 and got["bytes"] == size
    assert got["chunks"] > 1  # it streamed through, not in one piece


def test_asgi_websocket(served: None) -> None:
    from websockets.sync.client import connect

    url = (web.api.get_web_url() or "").replace("http://", "ws://") + "/ws"
    with connect(url, open_timeout=30) as ws:
        ws.send("one")
        assert ws.recv(timeout=30) == "echo: one"
        ws.send("two")
        assert ws.recv(timeout=30) == "echo: two"
        ws.send("bye")


def test_concurrent_requests_share_a_container(served: None) -> None:
    import concurrent.futures

    url = (web.api.get_web_url() or "") + "/pid"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: get(url), range(16)))
    assert all(status == 200 for status, _, _ in results)
    assert len({json.loads(body)["pid"] for _, body, _ in results}) <= 2


def test_many_keep_alive_connections_each_get_their_own_answers(served: None) -> None:
    """64 requests in flight at once over 16 keep-alive connections, answered by one container
    in batches: every response arrives on its own connection, with its own body."""
    import concurrent.futures

    url = urlsplit(web.api.get_web_url() or "")

    def client(n: int) -> list[tuple[int, dict[str, object]]]:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        answers = []
        for k in range(4):
            body = b"x" * (n * 100 + k)
            conn.request("POST", f"{url.path}/echo/{n}-{k}", body=body)
            response = conn.getresponse()
            answers.append((response.status, json.loads(response.read())))
        conn.close()
        return answers

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(client, range(16)))
    for n, answers in enumerate(results):
        for k, (status, answer) in enumerate(answers):
            assert status == 200 and answer["token"] == f"{n}-{k}" and answer["bytes"] == n * 100 + k, answer
    assert len({answer["pid"] for answers in results for _, answer in answers}) <= 2


def test_flask_wsgi_app(served: None) -> None:
    url = web.flask_app.get_web_url() or ""
    status, body, _ = get(url)
    assert (status, body) == (200, b"hello from flask")
    status, body, _ = get(url + "/echo", data=b'{"a": 1}', headers={"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (200, {"got": {"a": 1}, "path": "/echo"})


def test_web_server_subprocess(served: None) -> None:
    status, body, _ = get((web.file_server.get_web_url() or "") + "/hello.txt")
    assert (status, body) == (200, b"served by http.server")


def test_cls_web_method(served: None) -> None:
    url = web.Greeter().greet.get_web_url()
    assert url is not None and url.endswith("/main-e2e-web-greeter-greet-dev")
    status, body, _ = get(url + "?name=bo")
    assert (status, json.loads(body)) == (200, "hi bo")


def test_asgi_startup_failure_is_503(served: None) -> None:
    status, body, _ = get(web.broken_startup.get_web_url() or "")
    assert status == 503
    assert b"database unreachable" in body


def test_proxy_auth(served: None) -> None:
    from skylift._client import Client, run_sync

    url = web.secret.get_web_url() or ""
    status, _, _ = get(url)
    assert status == 401
    token: dict[str, Any] = run_sync(Client.from_env().call("proxy_token.create", {}))
    assert token["token_id"].startswith("wk-") and token["token_secret"].startswith("ws-")
    status, _, _ = get(url, headers={"Modal-Key": token["token_id"], "Modal-Secret": "ws-wrong"})
    assert status == 401
    status, body, _ = get(url, headers={"Modal-Key": token["token_id"], "Modal-Secret": token["token_secret"]})
    assert (status, json.loads(body)) == (200, "only with a proxy token")


def test_body_over_the_limit_is_413(served: None) -> None:
    parts = urlsplit(web.hello.get_web_url() or "")
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"POST {parts.path} HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * 1024 ** 4}\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def test_invalid_label_is_refused() -> None:
    with pytest.raises(InvalidError, match="label"):
        modal.fastapi_endpoint(label="Not_Valid!")



def test_deployed_endpoint_by_name(served: None) -> None:
    from skylift._client import Client, run_sync

    web.app.deploy()
    try:
        url = modal.Function.from_name("e2e-web", "hello").get_web_url()
        assert url is not None and url.endswith("/main-e2e-web-hello")  # deployed: no -dev
        status, body, _ = get(url + "?name=prod")
        assert (status, json.loads(body)) == (200, {"hello": "prod"})
        assert modal.Function.from_name("e2e-web", "create_item").get_web_url().endswith("/main-e2e-items")
    finally:
        run_sync(Client.from_env().call("app.stop", {"name": "e2e-web", "environment": "main"}))
