"""Who may talk to the control plane: the admin token, per-container tokens, and roles.

`hello` fixes a connection's role. Clients and workers present the admin token (the `token` file
in the server's home, created once with mode 0600). A container presents the token minted for
its task, which is valid only while that task lives; its session's identity is the task id.
Containers may call client methods too (functions call functions, use Dicts, ...).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from .._protocol import api
from .._protocol.rpc import ErrorCode, Handler, RpcError, Session
from .tasks import Tasks

CLIENTS = frozenset({api.ROLE_CLIENT, api.ROLE_CONTAINER, api.ROLE_WORKER})  # client methods
ADMIN = frozenset({api.ROLE_CLIENT})
CONTAINERS = frozenset({api.ROLE_CONTAINER})
WORKERS = frozenset({api.ROLE_WORKER})


def load_or_create_token(home: Path) -> str:
    """Read `home/token`, creating it (random, mode 0600) the first time."""
    path = home / "token"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if not token:
            raise RuntimeError(f"{path} is empty; delete it and restart the server to mint a new token") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class Authenticator:
    def __init__(self, admin_token: str, tasks: Tasks, server_version: str, server_id: str) -> None:
        self._admin = admin_token.encode()
        self._tasks = tasks
        self._answer = {"server_version": server_version, "server_id": server_id}

    async def __call__(self, session: Session, hello: dict[str, Any]) -> dict[str, Any]:
        role = hello.get("role")
        token = hello.get("token")
        if role not in (api.ROLE_CLIENT, api.ROLE_CONTAINER, api.ROLE_WORKER):
            raise RpcError(ErrorCode.AUTH, f"hello: role must be 'client', 'container' or 'worker', not {role!r}")
        if not isinstance(token, str) or not token:
            raise RpcError(ErrorCode.AUTH, "hello: no token given; pass the server's token (the `token` file in "
                                           "its SKYLIFT_HOME, or SKYLIFT_TOKEN)")
        if role == api.ROLE_CONTAINER:
            task_id = hello.get("task_id")
            task = self._tasks.get(task_id) if isinstance(task_id, str) else None
            if task is None or not task.alive or not task.accepts(token):
                raise RpcError(ErrorCode.AUTH, f"hello: the container token is not valid for task {task_id!r} "
                                               "(the task is unknown or has exited)")
            session.identity = task.task_id
        elif not hmac.compare_digest(token.encode(), self._admin):
            raise RpcError(ErrorCode.AUTH, "hello: invalid token; use the one in the server's SKYLIFT_HOME/token "
                                           "(or set SKYLIFT_TOKEN)")
        session.role = role
        return dict(self._answer)


Routes = dict[str, tuple[Handler, frozenset[str]]]
