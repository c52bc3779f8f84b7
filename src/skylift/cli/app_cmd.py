"""`skylift app list | logs | stop | history`."""

from __future__ import annotations

import collections
import time
from typing import Any

import click

from .. import _log_stream, _output, config
from .._client import Client, run_sync
from ..exception import NotFoundError
from ._common import env_option, table, when


def _call(method: str, params: dict[str, Any]) -> Any:
    return run_sync(Client.from_env().call(method, params))


def _resolve_app_id(app: str) -> str:
    if app.startswith("ap-"):
        return app
    got = _call("app.lookup", {"name": app, "environment": config.environment_name()})
    return str(got["app_id"])


@click.group("app")
def app_group() -> None:
    """Manage deployed and running apps."""


@app_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def list_cmd(as_json: bool) -> None:
    """List apps that are running or deployed (and recently stopped ones)."""
    got = _call("app.list", {"environment": config.environment_name()})
    apps = got["apps"]
    if as_json:
        import json

        click.echo(json.dumps(apps, indent=2))
        return
    rows = [[a["app_id"], a.get("name") or "", a["state"], str(a.get("n_containers", 0)), when(a.get("created_at")),
             when(a.get("stopped_at"))] for a in apps]
    click.echo(table(rows, ["App ID", "Name", "State", "Containers", "Created at", "Stopped at"]))


@app_group.command("logs")
@click.argument("app")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new log lines.")
@click.option("-n", "--tail", "tail", default=100, show_default=True, help="Show the last N lines.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@env_option
def logs_cmd(app: str, follow: bool, tail: int, timestamps: bool) -> None:
    """Show an app's logs (by name or ap- id); with -f, until the app stops and its containers exit."""
    app_id = _resolve_app_id(app)
    with _output.enable_output(show_progress=False):
        run_sync(_show_logs(app_id, follow=follow, tail=tail, timestamps=timestamps))


async def _show_logs(app_id: str, *, follow: bool, tail: int, timestamps: bool) -> None:
    def emit(entry: dict[str, Any]) -> None:
        _print_entry(entry, timestamps)

    stream = _log_stream.LogStream(Client.from_env(), app_id, emit=emit)
    last: collections.deque[dict[str, Any]] = collections.deque(maxlen=tail or None)
    while True:
        page = await stream.read(0, limit=_log_stream.PAGE)
        last.extend(page)
        if len(page) < _log_stream.PAGE:
            break
    for entry in last:
        emit(entry)
    if follow:
        await stream.run()  # to the log's end: the app stopped and its containers' last lines are here


def _print_entry(entry: dict[str, Any], timestamps: bool) -> None:
    text = str(entry.get("text", "")).rstrip("\n")
    if timestamps:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(entry.get("ts", 0))) + " " + text
    _output.container_log(str(entry.get("stream") or "stdout"), text)


def log_position(name: str) -> tuple[str, int] | None:
    """A deployed app's id and the seq of its last log line, or None if no app has that name."""
    try:
        app_id = _resolve_app_id(name)
    except NotFoundError:
        return None

    async def to_end() -> int:
        stream = _log_stream.LogStream(Client.from_env(), app_id)
        await stream.skip_to_end()
        return stream.seq

    return app_id, run_sync(to_end())


def follow_logs(app_id: str, after_seq: int) -> None:
    """Print an app's lines after `after_seq` until the app stops and its containers exit (or Ctrl-C)."""
    run_sync(_log_stream.LogStream(Client.from_env(), app_id, after_seq=after_seq).run())


@app_group.command("stop")
@click.argument("app")
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
@env_option
def stop_cmd(app: str, yes: bool) -> None:
    """Stop an app: its containers stop and its functions can no longer be called."""
    params: dict[str, Any] = {"environment": config.environment_name()}
    params["app_id" if app.startswith("ap-") else "name"] = app
    got = _call("app.stop", params)
    click.echo(f"Stopped {app} ({got['app_id']}).")


@app_group.command("history")
@click.argument("app")
@env_option
def history_cmd(app: str) -> None:
    """Show the deployment history of an app."""
    got = _call("app.history", {"name": app, "environment": config.environment_name()})
    rows = [[f"v{v['version']}", when(v.get("deployed_at")), v.get("tag") or "", (v.get("commit_info") or "")[:12],
             ", ".join(v.get("function_tags") or [])] for v in got["versions"]]
    click.echo(table(rows, ["Version", "Deployed at", "Tag", "Commit", "Functions"]))
