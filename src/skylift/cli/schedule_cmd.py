"""`skylift schedule list | pause | resume`: the schedules of deployed apps (and `skylift app schedules`)."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import config
from .._client import Client, run_sync
from ._common import env_option, table, when


def _call(method: str, params: dict[str, Any]) -> Any:
    return run_sync(Client.from_env().call(method, params))


def list_schedules(app_name: str | None, as_json: bool) -> None:
    params: dict[str, Any] = {"environment": config.environment_name()}
    if app_name:
        params["app_name"] = app_name
    schedules = _call("schedule.list", params)["schedules"]
    if as_json:
        click.echo(json.dumps(schedules, indent=2))
        return
    if not schedules:
        click.echo("No schedules. Give a function schedule=modal.Period(...) or modal.Cron(...) and deploy its app.")
        return
    rows = [[s["app_name"] or "", s["tag"], s["description"], "paused" if s["paused"] else when(s["next_run"]),
             when(s["last_run"])] for s in schedules]
    click.echo(table(rows, ["App", "Function", "Schedule", "Next run", "Last run"]))


@click.group("schedule")
def schedule_group() -> None:
    """See, pause and resume the schedules of deployed apps."""


@schedule_group.command("list")
@click.argument("app_name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def list_cmd(app_name: str | None, as_json: bool) -> None:
    """List scheduled functions with their next run time."""
    list_schedules(app_name, as_json)


def _set(method: str, app_name: str, function: str) -> dict[str, Any]:
    got: dict[str, Any] = _call(method, {"app_name": app_name, "tag": function,
                                         "environment": config.environment_name()})
    return got


@schedule_group.command("pause")
@click.argument("app_name")
@click.argument("function")
@env_option
def pause_cmd(app_name: str, function: str) -> None:
    """Stop starting runs of APP_NAME's FUNCTION until `skylift schedule resume` (survives restarts)."""
    _set("schedule.pause", app_name, function)
    click.echo(f"Paused the schedule of {app_name}.{function}.")


@schedule_group.command("resume")
@click.argument("app_name")
@click.argument("function")
@env_option
def resume_cmd(app_name: str, function: str) -> None:
    """Start runs again from the next slot (runs missed while paused are skipped)."""
    got = _set("schedule.resume", app_name, function)
    click.echo(f"Resumed the schedule of {app_name}.{function}; next run {when(got.get('next_run'))}.")


@click.command("schedules")
@click.argument("app_name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def app_schedules_cmd(app_name: str | None, as_json: bool) -> None:
    """List scheduled functions with their next run time (same as `skylift schedule list`)."""
    list_schedules(app_name, as_json)
