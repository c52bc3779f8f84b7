"""`skylift` entry point: the command groups, `--env`, and the one place that prints errors."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import config
from . import _errors

# Each command's module is imported when the command is used (or listed by --help): `skylift run`
# pays for run.py and what it needs, not for every command group. name -> (module, attribute).
_COMMANDS = {
    "run": ("run", "run_cmd"),
    "deploy": ("run", "deploy_cmd"),
    "serve": ("serve", "serve_cmd"),
    "shell": ("shell", "shell_cmd"),
    "app": ("app_cmd", "app_group"),
    "container": ("container_cmd", "container_group"),
    "server": ("server_cmd", "server_group"),
    "schedule": ("schedule_cmd", "schedule_group"),
    "token": ("token_cmd", "token_group"),
    "secret": ("secret_cmd", "secret_group"),
    "volume": ("volume_cmd", "volume_group"),
    "dict": ("dict_cmd", "dict_group"),
    "queue": ("queue_cmd", "queue_group"),
}


def _load_command(name: str) -> click.Command | None:
    import importlib

    where = _COMMANDS.get(name)
    if where is None:
        return None
    command: click.Command = getattr(importlib.import_module(f".{where[0]}", __package__), where[1])
    if name == "app" and isinstance(command, click.Group) and "schedules" not in command.commands:
        from .schedule_cmd import app_schedules_cmd

        command.add_command(app_schedules_cmd)
    return command


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            command = _load_command(cmd_name)
            if command is not None:
                self.add_command(command, cmd_name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # usage errors: click prints them, naming the option
        except KeyboardInterrupt:
            click.secho("Interrupted.", fg="yellow", err=True)
            sys.exit(130)
        except Exception as exc:
            if _errors.full_requested():
                raise  # SKYLIFT_TRACEBACK=1: Python's own traceback, every frame
            _errors.report(exc)  # the user's frames and the error


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(config.version(), prog_name="skylift")
@click.option("--traceback", is_flag=True, expose_value=False, is_eager=True, callback=_errors.enable_full,
              help="Show whole tracebacks, skylift's own frames included (or set SKYLIFT_TRACEBACK=1).")
def cli() -> None:
    """skylift: run Python functions in the cloud you own (Modal's API, self-hosted)."""


def main() -> None:
    cli(prog_name="skylift")


if __name__ == "__main__":
    main()
