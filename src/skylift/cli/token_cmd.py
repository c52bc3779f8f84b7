"""`skylift token create-proxy | list-proxy | delete-proxy`: tokens for `requires_proxy_auth` endpoints."""

from __future__ import annotations

from typing import Any

import click

from .._client import Client, run_sync
from ._common import table, when


def _call(method: str, params: dict[str, Any]) -> Any:
    return run_sync(Client.from_env().call(method, params))


@click.group("token")
def token_group() -> None:
    """Manage proxy-auth tokens for web endpoints with requires_proxy_auth=True."""


@token_group.command("create-proxy")
def create_proxy_cmd() -> None:
    """Mint a proxy-auth token; its secret is shown once (only a hash is stored)."""
    got = _call("proxy_token.create", {})
    click.echo(f"Token ID:     {got['token_id']}")
    click.echo(f"Token secret: {got['token_secret']}")
    click.echo("Send them as the Modal-Key and Modal-Secret headers. The secret is not shown again.")


@token_group.command("list-proxy")
def list_proxy_cmd() -> None:
    """List proxy-auth tokens (ids only)."""
    tokens = _call("proxy_token.list", {})["tokens"]
    click.echo(table([[t["token_id"], when(t["created_at"])] for t in tokens], ["Token ID", "Created at"]))


@token_group.command("delete-proxy")
@click.argument("token_id")
def delete_proxy_cmd(token_id: str) -> None:
    """Revoke a proxy-auth token at once."""
    _call("proxy_token.delete", {"token_id": token_id})
    click.echo(f"Deleted {token_id}.")
