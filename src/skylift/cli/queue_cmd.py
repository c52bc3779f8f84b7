"""`skylift queue create | list | len | peek | clear | delete`."""

from __future__ import annotations

import itertools
import json

import click

from .. import config
from .._client import Client, run_sync
from .._object import list_objects
from ..queue import Queue
from ._common import env_option, table, when
from .dict_cmd import show


def _handle(name: str) -> Queue:
    return Queue.from_name(name, environment_name=config.environment_name())


@click.group("queue")
def queue_group() -> None:
    """Manage Queues (durable FIFO queues with partitions)."""


@queue_group.command("create")
@click.argument("name")
@env_option
def create_cmd(name: str) -> None:
    """Create a named Queue."""
    Queue.objects.create(name, environment_name=config.environment_name())
    click.echo(f"Created Queue {name!r}")


@queue_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def list_cmd(as_json: bool) -> None:
    """List Queues with their number of items (all partitions)."""
    objects = run_sync(list_objects("queue", config.environment_name()))
    if as_json:
        click.echo(json.dumps(objects, indent=2))
        return
    click.echo(table([[o["name"], o["object_id"], str(o["size"]), when(o["created_at"])] for o in objects],
                     ["Name", "ID", "Items", "Created at"]))


@queue_group.command("len")
@click.argument("name")
@click.option("-p", "--partition", default=None, help="A partition (default: the default partition).")
@click.option("-t", "--total", is_flag=True, help="Count every partition.")
@env_option
def len_cmd(name: str, partition: str | None, total: bool) -> None:
    """Print the number of items."""
    click.echo(str(_handle(name).len(partition=partition, total=total)))


@queue_group.command("peek")
@click.argument("name")
@click.argument("n", type=int, default=1)
@click.option("-p", "--partition", default=None, help="A partition (default: the default partition).")
@env_option
def peek_cmd(name: str, n: int, partition: str | None) -> None:
    """Show the next N items without removing them."""
    for item in itertools.islice(_handle(name).iterate(partition=partition), n):
        click.echo(show(item))


@queue_group.command("clear")
@click.argument("name")
@click.option("-p", "--partition", default=None, help="A partition (default: the default partition).")
@click.option("-a", "--all", "everything", is_flag=True, help="Clear every partition.")
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
@env_option
def clear_cmd(name: str, partition: str | None, everything: bool, yes: bool) -> None:
    """Remove the items of a partition (or of all of them)."""
    if not yes:
        click.confirm(f"Remove the items of Queue {name!r}?", abort=True)
    _handle(name).clear(partition=partition, all=everything)
    click.echo(f"Cleared Queue {name!r}")


@queue_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
@click.option("--allow-missing", is_flag=True, help="Succeed if there is no such Queue.")
@env_option
def delete_cmd(name: str, yes: bool, allow_missing: bool) -> None:
    """Delete a Queue and its items."""
    if not yes:
        click.confirm(f"Delete Queue {name!r} and all its items?", abort=True)
    run_sync(Client.from_env().call("object.delete", {"kind": "queue", "name": name, "allow_missing": allow_missing,
                                                      "environment": config.environment_name()}))
    click.echo(f"Deleted Queue {name!r}")
