"""Parse command-line arguments for a local entrypoint (or a function) from its signature, the way
`modal run` does: `def main(n: int, name: str = "x", dry: bool = False)` takes `--n 3 --name y --dry`.
"""

from __future__ import annotations

import datetime
import inspect
import typing
from collections.abc import Callable
from typing import Any

import click

from ..exception import InvalidError


def _click_type(annotation: Any, name: str) -> Any:
    args = typing.get_args(annotation)
    if args and type(None) in args and len(args) == 2:  # Optional[X] and X | None
        annotation = next(a for a in args if a is not type(None))
    if annotation is inspect.Parameter.empty or annotation is str or annotation == "str":
        return click.STRING
    if annotation is int or annotation == "int":
        return click.INT
    if annotation is float or annotation == "float":
        return click.FLOAT
    if annotation is bool or annotation == "bool":
        return click.BOOL
    if annotation is datetime.datetime or annotation == "datetime.datetime":
        return click.DateTime()
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        if all(isinstance(c, str) for c in choices):
            return click.Choice(list(choices))
        if all(isinstance(c, int) for c in choices):
            return click.Choice([str(c) for c in choices])
    raise InvalidError(f"parameter {name!r} has type {annotation!r}, which can't come from the command line; "
                       "use str, int, float, bool, datetime or a Literal of str/int")


def _inferred(default: Any) -> Any:
    """An unannotated parameter's type, from its default (`n=3` takes an int); without a default
    the value stays a string, as in `modal run`."""
    if isinstance(default, (bool, int, float, datetime.datetime)):
        return type(default)
    return inspect.Parameter.empty


def _described(param: click.Parameter | None, hints: dict[str, Any], params: list[inspect.Parameter]) -> str:
    """` (parameter n: int)`, so that a conversion error names the parameter as well as the option."""
    if param is None or param.name is None:
        return ""
    match = next((p for p in params if p.name == param.name), None)
    if match is None:
        return ""
    annotation = hints.get(match.name, match.annotation)
    if annotation is inspect.Parameter.empty:
        annotation = _inferred(match.default)
    shown = "" if annotation is inspect.Parameter.empty else f": {getattr(annotation, '__name__', annotation)}"
    return f" (parameter {match.name}{shown})"


def parse_args(f: Callable[..., Any], argv: list[str], *, prog: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn argv into (args, kwargs) for `f`; `*args` in the signature takes argv verbatim."""
    signature = inspect.signature(f)
    try:
        hints = typing.get_type_hints(f)
    except Exception:
        hints = {}
    params = list(signature.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return tuple(argv), {}
    options: list[click.Parameter] = []
    literal_ints: set[str] = set()
    for p in params:
        if p.kind in (p.VAR_KEYWORD,):
            continue
        annotation = hints.get(p.name, p.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = _inferred(p.default)
        ctype = _click_type(annotation, p.name)
        if typing.get_origin(annotation) is typing.Literal and all(isinstance(c, int)
                                                                    for c in typing.get_args(annotation)):
            literal_ints.add(p.name)
        flag = "--" + p.name.replace("_", "-")
        if ctype is click.BOOL:
            default = False if p.default is inspect.Parameter.empty else p.default
            options.append(click.Option([f"{flag}/--no-{p.name.replace('_', '-')}", p.name], default=default))
            continue
        required = p.default is inspect.Parameter.empty
        if required:
            options.append(click.Option([flag, p.name], type=ctype, required=True))
        else:
            options.append(click.Option([flag, p.name], type=ctype, default=p.default))
    command = click.Command(prog, params=options, callback=lambda **kw: kw)
    try:
        kwargs = command.main(argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit:
        raise SystemExit(0) from None
    except click.BadParameter as exc:
        message = exc.format_message().rstrip(".")
        raise InvalidError(f"{prog}: {message}{_described(exc.param, hints, params)}.") from None
    except click.ClickException as exc:
        raise InvalidError(f"{prog}: {exc.format_message()}") from None
    if not isinstance(kwargs, dict):
        raise SystemExit(0)
    for name in literal_ints:
        if kwargs.get(name) is not None:
            kwargs[name] = int(kwargs[name])
    return (), kwargs
