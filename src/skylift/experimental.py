"""`modal.experimental`: the parts skylift backs for real.

    stop_fetching_inputs()        inside a container: take no more inputs; the container exits
                                  once those it holds are done (new inputs go to other containers)
    list_deployed_apps(env)       [AppInfo(app_id, name, containers)] of the environment's deployed apps
    stop_app(name)                stop a running app by name
    get_app_objects(app_name)     {name: Function | Cls} of a deployed app (handles from from_name)
    get_app_lifecycle(app_id)     AppLifecycle(version, created_at, deployed_at, stopped_at, ...)

Not here (they stay in docs/modal-api-report.md): clusters (`clustered`, `get_cluster_info`),
changing a running container's input concurrency, image deletion, flash servers and streams.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from . import config
from ._client import Client, run_sync
from .exception import InvalidError


@dataclass
class AppInfo:
    """A deployed app, as `list_deployed_apps` returns it."""

    app_id: str
    name: str
    containers: int


@dataclass
class AppLifecycle:
    """When an app was created, last deployed and stopped (`*_by`: skylift has one user, so "" / None)."""

    version: int | None
    created_at: datetime.datetime
    created_by: str
    deployed_at: datetime.datetime | None
    deployed_by: str | None
    stopped_at: datetime.datetime | None
    stopped_by: str | None


def get_app_lifecycle(app_id: str, *, client: Any = None) -> AppLifecycle:
    """The lifecycle of the app with this id (`app.info`)."""
    from ._introspection import app_info

    life = app_info(run_sync(Client.from_env().call("app.info", {"app_id": app_id}))).lifecycle
    return AppLifecycle(life.version, life.created_at, life.created_by, life.deployed_at, life.deployed_by,
                        life.stopped_at, life.stopped_by)


def stop_fetching_inputs() -> None:
    """Take no more inputs in this container; it finishes the ones it holds, runs @exit hooks and exits."""
    import sys

    entrypoint = sys.modules.get("skylift._runtime.entrypoint")
    current = getattr(entrypoint, "current_inputs", None)
    if current is None:
        raise InvalidError("stop_fetching_inputs() works inside a skylift container that runs a function")
    inputs, _ = current
    inputs.request_stop()


async def _list_deployed_apps(environment_name: str) -> list[AppInfo]:
    got = await Client.from_env().call("app.list", {"environment": config.environment_name(environment_name or None)})
    return [AppInfo(a["app_id"], a["name"] or "", int(a.get("n_containers") or 0))
            for a in got["apps"] if a["state"] == "deployed"]


def list_deployed_apps(environment_name: str = "", client: Any = None) -> list[AppInfo]:
    """The deployed apps of the environment, with their number of running containers."""
    return run_sync(_list_deployed_apps(environment_name))


def stop_app(name: str, *, environment_name: str | None = None, client: Any = None) -> None:
    """Stop the running app named `name` (deployed first, else the newest ephemeral one)."""
    params = {"name": name, "environment": config.environment_name(environment_name)}
    run_sync(Client.from_env().call("app.stop", params))


async def _app_objects(app_name: str, environment_name: str | None) -> dict[str, Any]:
    from .cls import Cls
    from .functions import Function

    client = Client.from_env()
    env = config.environment_name(environment_name)
    found = await client.call("app.lookup", {"name": app_name, "environment": env})
    out: dict[str, Any] = {}
    for tag in found["function_tags"]:
        if "[" in tag:  # a with_options() variant: part of its function, not an object of the app
            continue
        got = await client.call("function.get", {"app_name": app_name, "tag": tag, "environment": env})
        is_class = bool((got.get("definition") or {}).get("is_class"))
        out[tag] = (Cls.from_name(app_name, tag, environment_name=environment_name) if is_class
                    else Function.from_name(app_name, tag, environment_name=environment_name))
    return out


def get_app_objects(app_name: str, *, environment_name: str | None = None, client: Any = None) -> dict[str, Any]:
    """The functions and classes of a deployed app by name, as unhydrated `from_name` handles."""
    return run_sync(_app_objects(app_name, environment_name))
