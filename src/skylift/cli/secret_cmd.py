"""`skylift secret create | list | delete`: named secrets (values are never printed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .. import config
from .._client import Client, run_sync
from ..exception import InvalidError
from ..secret import parse_dotenv
from ._common import env_option, table, when


def _call(method: str, params: dict[str, Any]) -> Any:
    return run_sync(Client.from_env().call(method, params))


@click.group("secret")
def secret_group() -> None:
    """Manage secrets (encrypted environment variables for containers)."""


@secret_group.command("create")
@click.argument("name")
@click.argument("pairs", nargs=-1)
@click.option("--from-dotenv", "dotenv", type=click.Path(exists=True, dir_okay=False), help="Read KEY=VALUE lines "
              "from a .env file.")
@click.option("--from-json", "json_file", type=click.Path(exists=True, dir_okay=False), help="Read a JSON object.")
@click.option("--force", is_flag=True, help="Replace the values of an existing secret.")
@env_option
def create_cmd(name: str, pairs: tuple[str, ...], dotenv: str | None, json_file: str | None, force: bool) -> None:
    """Create a secret: `skylift secret create NAME KEY=VALUE ...` (use KEY=- to read a value from stdin)."""
    values: dict[str, str] = {}
    if dotenv:
        values.update(parse_dotenv(Path(dotenv).read_text()))
    if json_file:
        loaded = json.loads(Path(json_file).read_text())
        if not isinstance(loaded, dict):
            raise InvalidError(f"{json_file} must hold a JSON object of KEY: value")
        values.update({str(k): str(v) for k, v in loaded.items()})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidError(f"{pair!r} is not KEY=VALUE")
        values[key] = sys.stdin.read().rstrip("\n") if value == "-" else value
    if not values:
        raise InvalidError("a secret needs at least one KEY=VALUE (or --from-dotenv / --from-json)")
    _call("secret.create", {"name": name, "values": values, "environment": config.environment_name(),
                            "overwrite": force})
    click.echo(f"Created secret {name!r} with {len(values)} key(s): {', '.join(sorted(values))}")
    click.echo(f"Use it with: @app.function(secrets=[modal.Secret.from_name({name!r})])")


@secret_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def list_cmd(as_json: bool) -> None:
    """List secrets: names and how many keys (never values)."""
    got = _call("object.list", {"kind": "secret", "environment": config.environment_name()})
    objects = got["objects"]
    if as_json:
        click.echo(json.dumps(objects, indent=2))
        return
    rows = [[o["name"], o["object_id"], str(o["size"]), when(o["created_at"])] for o in objects]
    click.echo(table(rows, ["Name", "ID", "Keys", "Created at"]))


@secret_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
@click.option("--allow-missing", is_flag=True, help="Succeed if there is no such secret.")
@env_option
def delete_cmd(name: str, yes: bool, allow_missing: bool) -> None:
    """Delete a secret. Functions deployed with it lose its variables in new containers."""
    if not yes:
        click.confirm(f"Delete secret {name!r}?", abort=True)
    _call("object.delete", {"kind": "secret", "name": name, "environment": config.environment_name(),
                            "allow_missing": allow_missing})
    click.echo(f"Deleted secret {name!r}")
