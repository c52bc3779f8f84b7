"""Who may talk to the control plane: tokens, `hello`, and the principal each session becomes.

`hello` fixes a connection's role and principal (server/access.py decides what each may call):

    client     the admin token (the `token` file in the server's home, created once, mode 0600)
    worker     the worker token (`worker_token`, likewise) or the admin token; the worker token can
               never act as a client
    container  the token minted for its task, valid only while that task lives; the session's
               identity is the task id and its principal carries the task's app and strict mode
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from .._protocol import api
from .._protocol.rpc import ErrorCode, RpcError
from .._protocol.rpc_server import Handler, Session
from .access import ADMIN as ADMIN_KIND
from .access import CONTAINER, WORKER, Principal
from .execution.tasks import Tasks


def load_or_create_token(home: Path, filename: str = "token") -> str:
    """Read `home/<filename>`, creating it (random, mode 0600) the first time."""
    path = home / filename
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
    def __init__(self, admin_token: str, tasks: Tasks, server_version: str, server_id: str,
                 worker_token: str | None = None) -> None:
        self._admin = admin_token.encode()
        self._worker = worker_token.encode() if worker_token else None
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
            app = task.pool.function.app
            sandbox = bool(task.definition.get("sandbox"))
            session.principal = Principal(CONTAINER, environment=app.environment, task_id=task.task_id,
                                          app_id=app.app_id, strict=app.strict_containers or sandbox,
                                          sandbox=sandbox)
        elif hmac.compare_digest(token.encode(), self._admin):
            session.principal = Principal(ADMIN_KIND if role == api.ROLE_CLIENT else WORKER)
        elif self._worker is not None and hmac.compare_digest(token.encode(), self._worker):
            if role != api.ROLE_WORKER:
                raise RpcError(ErrorCode.AUTH, "hello: that is the worker token, which connects only as a worker; "
                                               "clients use SKYLIFT_HOME/token (or SKYLIFT_TOKEN)")
            session.principal = Principal(WORKER)
        else:
            raise RpcError(ErrorCode.AUTH, "hello: invalid token; use the one in the server's SKYLIFT_HOME/token "
                                           "(or set SKYLIFT_TOKEN)")
        session.role = role
        return dict(self._answer)


# The control plane's methods. Who may call each is decided in one place, server/access.py's RULES,
# not beside the handlers.
Routes = dict[str, Handler]
