"""`skylift app list | logs | stop | history`."""

from __future__ import annotations

import time
from typing import Any

import click

from .. import config
from .._client import Client, run_sync
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
    """Show an app's logs (by name or ap- id)."""
    app_id = _resolve_app_id(app)
    entries: list[dict[str, Any]] = []
    seq = 0
    while True:
        got = _call("app.logs", {"app_id": app_id, "after_seq": seq, "timeout": 0, "limit": 10000})
        entries.extend(got["entries"])
        if got.get("next_seq", seq) == seq or not got["entries"]:
            break
        seq = got["next_seq"]
    for entry in entries[-tail:] if tail else entries:
        _print_entry(entry, timestamps)
    while follow:
        got = _call("app.logs", {"app_id": app_id, "after_seq": seq, "timeout": 25})
        for entry in got["entries"]:
            _print_entry(entry, timestamps)
        seq = got.get("next_seq", seq)
        if got.get("app_state") == "stopped" and not got["entries"]:
            break


def _print_entry(entry: dict[str, Any], timestamps: bool) -> None:
    text = str(entry.get("text", "")).rstrip("\n")
    if timestamps:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(entry.get("ts", 0))) + " " + text
    click.echo(text, err=entry.get("stream") == "stderr")


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
