"""`skylift dict create | list | get | items | clear | delete`."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import config
from .._client import Client, run_sync
from .._object import list_objects
from ..dict import Dict
from ._common import env_option, table, when


def _handle(name: str) -> Dict:
    return Dict.from_name(name, environment_name=config.environment_name())


def show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


@click.group("dict")
def dict_group() -> None:
    """Manage Dicts (durable key-value stores)."""


@dict_group.command("create")
@click.argument("name")
@env_option
def create_cmd(name: str) -> None:
    """Create a named Dict."""
    Dict.objects.create(name, environment_name=config.environment_name())
    click.echo(f"Created Dict {name!r}")


@dict_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def list_cmd(as_json: bool) -> None:
    """List Dicts with their number of entries."""
    objects = run_sync(list_objects("dict", config.environment_name()))
    if as_json:
        click.echo(json.dumps(objects, indent=2))
        return
    click.echo(table([[o["name"], o["object_id"], str(o["size"]), when(o["created_at"])] for o in objects],
                     ["Name", "ID", "Entries", "Created at"]))


@dict_group.command("get")
@click.argument("name")
@click.argument("key")
@env_option
def get_cmd(name: str, key: str) -> None:
    """Print the value of KEY (a string key)."""
    missing = object()
    value = _handle(name).get(key, missing)
    if value is missing:
        raise click.ClickException(f"no key {key!r} in Dict {name!r}")
    click.echo(show(value))


@dict_group.command("items")
@click.argument("name")
@click.argument("n", type=int, default=20)
@click.option("-a", "--all", "everything", is_flag=True, help="Show every entry.")
@click.option("-r", "--repr", "use_repr", is_flag=True, help="Show keys and values with repr().")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (values that JSON can't hold become strings).")
@env_option
def items_cmd(name: str, n: int, everything: bool, use_repr: bool, as_json: bool) -> None:
    """Show the first N entries."""
    rows = []
    for i, (key, value) in enumerate(_handle(name).items()):
        if not everything and i >= n:
            break
        rows.append((key, value))
    if as_json:
        click.echo(json.dumps([[k, v] for k, v in rows], indent=2, default=repr))
        return
    fmt = repr if use_repr else show
    click.echo(table([[fmt(k), fmt(v)] for k, v in rows], ["Key", "Value"]))


@dict_group.command("clear")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
@env_option
def clear_cmd(name: str, yes: bool) -> None:
    """Remove every entry."""
    if not yes:
        click.confirm(f"Remove every entry of Dict {name!r}?", abort=True)
    _handle(name).clear()
    click.echo(f"Cleared Dict {name!r}")


@dict_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
@click.option("--allow-missing", is_flag=True, help="Succeed if there is no such Dict.")
@env_option
def delete_cmd(name: str, yes: bool, allow_missing: bool) -> None:
    """Delete a Dict and its entries."""
    if not yes:
        click.confirm(f"Delete Dict {name!r} and all its entries?", abort=True)
    run_sync(Client.from_env().call("object.delete", {"kind": "dict", "name": name, "allow_missing": allow_missing,
                                                      "environment": config.environment_name()}))
    click.echo(f"Deleted Dict {name!r}")
