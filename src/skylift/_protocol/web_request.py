"""A web request as the gateway hands it to the container: the one argument of its input.

A flat tuple rather than the ASGI scope as a dict: on every request the control plane pickles it
in a quarter of the dict's time and the container unpickles it in under half (a dict's string keys
are rebuilt by every load), and the constant parts of the scope (`asgi`, `scheme`) don't travel.
`unpack` gives the ASGI scope, the body that came with the input and whether more follows.
"""

from __future__ import annotations

from typing import Any

# The ASGI version the gateway speaks, as a scope's "asgi" key.
ASGI = {"version": "3.0", "spec_version": "2.3"}

Request = tuple[Any, ...]


def pack(*, websocket: bool, method: str, path: str, raw_path: bytes, query_string: bytes, root_path: str,
         headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None, server: tuple[str, int] | None,
         http_version: str, subprotocols: list[str], body: bytes, more_body: bool) -> Request:
    return (websocket, method, path, raw_path, query_string, root_path, headers, client, server, http_version,
            subprotocols, body, more_body)


def unpack(request: Request) -> tuple[dict[str, Any], bytes, bool]:
    """(ASGI scope, body so far, more_body). The scope is new, for the app to keep or change."""
    (websocket, method, path, raw_path, query_string, root_path, headers, client, server, http_version,
     subprotocols, body, more_body) = request
    scope: dict[str, Any] = {
        "type": "websocket" if websocket else "http",
        "asgi": dict(ASGI),
        "http_version": http_version,
        "scheme": "ws" if websocket else "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": tuple(client) if client is not None else None,
        "server": tuple(server) if server is not None else None,
    }
    if websocket:
        scope["subprotocols"] = subprotocols
    else:
        scope["method"] = method
    return scope, body, more_body
