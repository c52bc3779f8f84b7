"""Inside a container: the ids of the other functions of the app, for nested calls."""

from __future__ import annotations

import asyncio
from typing import Any

from ._client import Client
from .exception import NotFoundError

_layout: dict[str, Any] | None = None
_lock: asyncio.Lock | None = None


async def _get_layout(client: Client) -> dict[str, Any]:
    global _layout, _lock
    if _layout is None:
        if _lock is None:
            _lock = asyncio.Lock()
        async with _lock:
            if _layout is None:
                _layout = await client.call("container.init", {})
    return _layout


async def function_id_for(client: Client, tag: str) -> str:
    layout = await _get_layout(client)
    ids: dict[str, str] = layout.get("function_ids") or {}
    if tag not in ids:
        raise NotFoundError(f"function {tag!r} is not part of this container's app (it has: {', '.join(sorted(ids))})")
    return ids[tag]
