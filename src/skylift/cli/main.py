"""`skylift` entry point: the command groups, `--env`, and the one place that prints errors."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import config
from . import (
    _errors,
    app_cmd,
    container_cmd,
    dict_cmd,
    queue_cmd,
    run,
    schedule_cmd,
    secret_cmd,
    serve,
    server_cmd,
    shell,
    token_cmd,
    volume_cmd,
)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # usage errors: click prints them, naming the option
        except KeyboardInterrupt:
            click.secho("Interrupted.", fg="yellow", err=True)
            sys.exit(130)
        except Exception as exc:
            _errors.report(exc)  # the user's frames and the error; SKYLIFT_TRACEBACK=1 for all


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(config.version(), prog_name="skylift")
@click.option("--traceback", is_flag=True, expose_value=False, is_eager=True, callback=_errors.enable_full,
              help="Show whole tracebacks, skylift's own frames included (or set SKYLIFT_TRACEBACK=1).")
def cli() -> None:
    """skylift: run Python functions in the cloud you own (Modal's API, self-hosted)."""


cli.add_command(run.run_cmd)
cli.add_command(run.deploy_cmd)
cli.add_command(app_cmd.app_group)
cli.add_command(container_cmd.container_group)
cli.add_command(server_cmd.server_group)
cli.add_command(serve.serve_cmd)
cli.add_command(schedule_cmd.schedule_group)
cli.add_command(token_cmd.token_group)
app_cmd.app_group.add_command(schedule_cmd.app_schedules_cmd)
cli.add_command(secret_cmd.secret_group)
cli.add_command(volume_cmd.volume_group)
cli.add_command(dict_cmd.dict_group)
cli.add_command(queue_cmd.queue_group)
cli.add_command(serve.serve_cmd)
cli.add_command(shell.shell_cmd)
cli.add_command(schedule_cmd.schedule_group)
cli.add_command(token_cmd.token_group)
app_cmd.app_group.add_command(schedule_cmd.app_schedules_cmd)


def main() -> None:
    cli(prog_name="skylift")


if __name__ == "__main__":
    main()
