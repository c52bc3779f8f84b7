"""`skylift server [start|stop|status]`: the embedded platform, or a foreground server."""

from __future__ import annotations

import os
import sys

import click

from .. import _local_server, config


@click.group("server", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (foreground).")
@click.option("--port", default=7410, show_default=True, help="TCP port (foreground).")
@click.pass_context
def server_group(ctx: click.Context, host: str, port: int) -> None:
    """Run the control plane and a worker in the foreground (for a shared machine)."""
    if ctx.invoked_subcommand is not None:
        return
    home = config.home()
    click.echo(f"skylift server: home {home}, listening on tcp://{host}:{port}; clients need "
               f"SKYLIFT_SERVER_URL=tcp://{host}:{port} and SKYLIFT_TOKEN from {home / 'token'}", err=True)
    os.execv(sys.executable, [sys.executable, "-m", "skylift.server", "--home", str(home), "--host", host,
                              "--port", str(port)])


@server_group.command("start")
def start_cmd() -> None:
    """Start the local platform in the background (clients also start it on demand)."""
    info = _local_server.start(config.home(), quiet=True)
    click.echo(f"skylift platform running (pid {info.pid}, {info.url}, home {config.home()})")


@server_group.command("stop")
def stop_cmd() -> None:
    """Stop the local platform and every container it runs."""
    if _local_server.stop(config.home()):
        click.echo("Stopped the local skylift platform.")
    else:
        click.echo("The local skylift platform is not running.")


@server_group.command("status")
def status_cmd() -> None:
    """Show whether the local platform runs, and where."""
    status = _local_server.status(config.home())
    if status is None:
        click.echo(f"not running (home {config.home()})")
        sys.exit(3)
    click.echo("\n".join(f"{k}: {v}" for k, v in status.items()))
