"""`skylift run` and `skylift deploy`."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import click

from .. import _output
from ..exception import InvalidError
from . import app_cmd
from ._common import env_option
from ._import import Runnable, find_app, find_runnable, import_ref, split_ref
from ._signature import parse_args


def _load(ref: str, module_flag: bool) -> tuple[Any, str | None]:
    target, name = split_ref(ref)
    return import_ref(target, is_module=module_flag), name


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("ref")
@click.option("-m", "module_flag", is_flag=True, help="REF is a module path (package.module), not a file.")
@click.option("-d", "--detach", is_flag=True, help="Keep the app running after this command exits.")
@click.option("-q", "--quiet", is_flag=True, help="Don't show progress or container logs.")
@click.option("-n", "--name", default=None, help="Name of the app run.")
@click.option("-w", "--write-result", default=None, help="Write the function's return value to this file.")
@env_option
@click.pass_context
def run_cmd(ctx: click.Context, ref: str, module_flag: bool, detach: bool, quiet: bool, name: str | None,
            write_result: str | None) -> None:
    """Run a local entrypoint or a function of an app: `skylift run app.py[::name] [--arg value ...]`."""
    if ref.startswith("-"):  # an option of `run` it doesn't have, taken for REF by ignore_unknown_options
        raise click.NoSuchOption(ref, possibilities=[o for p in ctx.command.params for o in p.opts
                                                     if o.startswith("-")], ctx=ctx)
    module, fn_name = _load(ref, module_flag)
    runnable = find_runnable(module, fn_name)
    argv = list(ctx.args)
    target = _callable_for(runnable)
    args, kwargs = parse_args(target, argv, prog=f"skylift run {ref}")
    output = _output.enable_output() if not quiet else _NullContext()
    with output, runnable.app.run(detach=detach, name=name):
        result = _invoke(runnable, args, kwargs)
    if write_result:
        Path(write_result).write_bytes(result if isinstance(result, bytes) else str(result).encode())


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _callable_for(runnable: Runnable) -> Any:
    if runnable.entrypoint is not None:
        return runnable.entrypoint.raw_f
    if runnable.function is not None:
        return runnable.function.get_raw_f()
    assert runnable.cls is not None and runnable.cls._user_cls is not None and runnable.method is not None
    # The method's signature without `self`, for parsing its arguments from the command line.
    return functools.partial(getattr(runnable.cls._user_cls, runnable.method).raw_f, None)


def _invoke(runnable: Runnable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if runnable.entrypoint is not None:
        result = runnable.entrypoint.raw_f(*args, **kwargs)
        if hasattr(result, "__await__"):
            import asyncio

            result = asyncio.run(_await(result))
        return result
    if runnable.function is not None:
        fn = runnable.function
        if fn.is_generator:
            for item in fn.remote_gen(*args, **kwargs):
                print(item)
            return None
        return fn.remote(*args, **kwargs)
    assert runnable.cls is not None and runnable.method is not None
    return getattr(runnable.cls(), runnable.method).remote(*args, **kwargs)


async def _await(awaitable: Any) -> Any:
    return await awaitable


@click.command("deploy")
@click.argument("ref")
@click.option("-m", "module_flag", is_flag=True, help="REF is a module path (package.module), not a file.")
@click.option("--name", default=None, help="Name of the deployment (default: the App's name).")
@click.option("--tag", default="", help="Tag of this deployment version.")
@click.option("-q", "--quiet", is_flag=True, help="Don't show progress.")
@click.option("--stream-logs", is_flag=True,
              help="Then print the app's logs until it is stopped (its containers' last lines included) or Ctrl-C.")
@env_option
def deploy_cmd(ref: str, module_flag: bool, name: str | None, tag: str, quiet: bool, stream_logs: bool) -> None:
    """Deploy an app: its functions stay available (Function.from_name) and its schedules run."""
    target, app_var = split_ref(ref)
    module = import_ref(target, is_module=module_flag)
    app = find_app(module, app_name=app_var)
    if not (name or app.name):
        raise InvalidError(f"the App in {target} has no name; use App(\"my-app\") or `skylift deploy --name my-app`")
    start = time.monotonic()
    # Where the log is now, so the stream shows what this version's (and the old version's draining)
    # containers write from here on.
    position = app_cmd.log_position(name or app.name or "") if stream_logs else None
    output = _output.enable_output() if not quiet else _NullContext()
    with output:
        app.deploy(name=name, tag=tag)
    if quiet:
        click.echo(f"Deployed {name or app.name} in {time.monotonic() - start:.2f}s")
    if stream_logs and app.app_id:
        with _output.enable_output(show_progress=False):
            app_cmd.follow_logs(app.app_id, position[1] if position and position[0] == app.app_id else 0)

