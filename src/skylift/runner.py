"""`modal.runner`: deploy or run an app from code, as Modal programs that predate `App.deploy()` do.

    from modal.runner import deploy_app
    result = deploy_app(app, "my-app")     # DeployResult(app_id="ap-...", ...)

`App.deploy()`, `App.run()` and the `skylift deploy/run` commands are the usual ways; these are the
same operations under Modal's older names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .exception import InvalidError

if TYPE_CHECKING:
    from .app import App


@dataclass
class DeployResult:
    """What `deploy_app` did: the app's id (`app_page_url`/`app_logs_url` are None: skylift has no
    hosted pages), and warnings (none so far)."""

    app_id: str
    app_page_url: str | None = None
    app_logs_url: str | None = None
    warnings: list[str] = field(default_factory=list)


def _only_defaults(what: str, deployment_strategy: str, staged: bool = False) -> None:
    if deployment_strategy != "rolling":
        raise InvalidError(f"{what}(deployment_strategy={deployment_strategy!r}) is not available on skylift; "
                           "leave Modal's default, 'rolling'")
    if staged:
        raise InvalidError(f"{what}(staged=True): staged deployments are not available on skylift; deploy the "
                           "app under another name to try it first")


def deploy_app(app: App, name: str | None = None, *, environment_name: str | None = None, tag: str = "",
               deployment_strategy: str = "rolling", client: Any = None, staged: bool = False) -> DeployResult:
    """Deploy `app` (as `name`, default the app's own name), like `skylift deploy`."""
    from ._runner import deploy_app as _deploy

    _only_defaults("deploy_app", deployment_strategy, staged)
    _deploy(app, name=name, environment_name=environment_name, tag=tag)
    return DeployResult(app_id=app.app_id or "")


def run_app(app: App, *, name: str | None = None, client: Any = None, detach: bool = False,
            environment_name: str | None = None, interactive: bool = False, deployment_strategy: str = "rolling",
            stream_output: bool = True) -> Any:
    """Run `app` ephemerally: the context manager `app.run()` returns (`with run_app(app): f.remote()`)."""
    _only_defaults("run_app", deployment_strategy)
    return app.run(client=client, detach=detach, interactive=interactive, environment_name=environment_name,
                   name=name)


__all__ = ["DeployResult", "deploy_app", "run_app"]
