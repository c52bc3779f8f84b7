"""`skylift container list | logs | exec | stop | profile`: the running containers, like `modal container`."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from .. import config
from .._client import Client, run_sync
from ._common import env_option, table


def _call(method: str, params: dict[str, Any]) -> Any:
    return run_sync(Client.from_env().call(method, params))


def _ms(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    return f"{value / 3600:.1f}h"


@click.group("container")
def container_group() -> None:
    """See and manage running containers (warm pools included)."""


@container_group.command("list")
@click.option("--app", "app_id", default=None, help="Only the containers of this app (ap- id).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def list_cmd(app_id: str | None, as_json: bool) -> None:
    """List running containers: their function, state, inputs, and how fast they started."""
    params: dict[str, Any] = {"environment": config.environment_name()}
    if app_id:
        params["app_id"] = app_id
    tasks = _call("task.list", params)["tasks"]
    if as_json:
        click.echo(json.dumps(tasks, indent=2))
        return
    rows = []
    for t in tasks:
        app = t.get("app_name") or t["app_id"]
        inputs = f"{t.get('running_inputs', 0)}/{t.get('served', 0)}"
        state = t["state"] if t.get("idle") is None else f"{t['state']} (idle {_seconds(t['idle'])})"
        rows.append([t["task_id"], app, t["function_tag"], state, t.get("start") or "-", _ms(t.get("cold_start_ms")),
                     _seconds(t.get("uptime")), inputs])
    click.echo(table(rows, ["Container ID", "App", "Function", "State", "Start", "Cold start", "Uptime",
                            "Inputs (running/done)"]))


@container_group.command("profile")
@click.argument("container_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profile_cmd(container_id: str, as_json: bool) -> None:
    """Show where a container's cold start went, phase by phase."""
    task = _call("task.get", {"task_id": container_id})["task"]
    profile = task.get("profile") or {}
    if as_json:
        click.echo(json.dumps(profile, indent=2))
        return
    how = {"fork": "forked from a memory snapshot", "preloaded": "forked from a preloaded interpreter"}.get(
        profile.get("how") or "", "started as a new process")
    click.echo(f"{container_id} ({task.get('app_name') or task['app_id']} / {task['function_tag']}): {how}")
    rows = [[label, _ms(ms)] for label, ms in profile.get("phases") or []]
    rows.append(["total (to first input)" if profile.get("first_input") else "total (to ready)",
                 _ms(profile.get("total_ms"))])
    click.echo(table(rows, ["Phase", "Time"]))
    saved = profile.get("saved") or {}
    if saved:
        parts = [f"{label} {_ms(saved[key])}" for key, label in (("import_ms", "imports"),
                                                                  ("snap_hooks_ms", "snap=True hooks")) if key in saved]
        click.echo("Done once in the snapshot instead: " + ", ".join(parts))
    note = (profile.get("worker") or {}).get("note")
    if note:
        click.echo(f"Note: {note}")


@container_group.command("logs")
@click.argument("container_id")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until the container exits.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
def logs_cmd(container_id: str, follow: bool, timestamps: bool) -> None:
    """Show one container's logs."""
    seq = 0
    while True:
        got = _call("task.logs", {"task_id": container_id, "after_seq": seq, "timeout": 25 if follow else 0,
                                  "limit": 1000})
        for entry in got["entries"]:
            text = str(entry.get("text", "")).rstrip("\n")
            if timestamps:
                text = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(entry.get("ts", 0))) + " " + text
            click.echo(text, err=entry.get("stream") == "stderr")
        moved = got.get("next_seq", seq) != seq
        seq = got.get("next_seq", seq)
        if got["entries"] or moved:
            continue  # there may be more right away
        if not follow or got.get("done"):
            return


@container_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("container_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds before the command is killed.")
def exec_cmd(container_id: str, command: tuple[str, ...], timeout: float) -> None:
    """Run a command in a container (its environment and working directory) and print its output."""
    got = _call("task.exec", {"task_id": container_id, "argv": list(command), "timeout": timeout})
    output = got.get("output") or ""
    if got.get("truncated"):
        click.secho("(output truncated to its last MiB)", fg="yellow", err=True)
    click.echo(output, nl=not output.endswith("\n") and bool(output))
    sys.exit(int(got.get("exit_code", 0)))


@container_group.command("stop")
@click.argument("container_id")
@click.option("--kill", is_flag=True, help="Kill at once instead of letting it drain and run @exit.")
def stop_cmd(container_id: str, kill: bool) -> None:
    """Stop a container: it finishes its inputs and runs @exit (the autoscaler starts another if needed)."""
    _call("task.stop", {"task_id": container_id, "kill": kill})
    click.echo(f"{'Killed' if kill else 'Stopping'} {container_id}.")
