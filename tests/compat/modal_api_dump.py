"""Dump the public API of whatever `import modal` gives, as JSON `{key: value}`.

    python modal_api_dump.py > modal.json                      # the real `modal` (in its own venv)
    python -m skylift.compat modal_api_dump.py --probe modal.json > skylift.json
                                                               # skylift through the alias: every key of
                                                               # the reference, looked up the same way

Keys (one per thing a program can use):
    module:modal.X                      a public submodule imports
    attr:modal.X.NAME                   a public name of a public module (value: its kind)
    member:modal.Cls.NAME               a public member of a public class (value: its kind)
    param:modal.Cls.meth(NAME)          a parameter of a function, method or constructor (value: its kind;
                                        a callable that takes **kwargs accepts every keyword: "**kwargs";
                                        "unchecked": skylift's member is a property that makes the callable
                                        per instance, so its parameters can't be read from the class)
    aio:modal.Cls.NAME                  the member has an `.aio` (async) variant ("unchecked": skylift's member is
                                        a property, its `.aio` exists per instance)
    excbase:modal.exception.X<Y         exception X derives from Y (a class of modal.exception or a builtin)
    cli:modal a b                       a CLI command or group
    cliopt:modal a b --flag             a CLI option (its longest name) or ARG:name, a positional argument

Standard library only: it runs in Modal's venv and in skylift's.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
import warnings
from typing import Any

# Modal packages that are implementation, not API: the CLI's modules (its commands are dumped as cli:),
# the image builder's data, the docs and skills bundles.
SKIP_MODULES = ("modal.cli", "modal.builder", "modal.skills", "modal.experimental.flash")
CLASS_MEMBER_SKIP = {"mro"}
# A transitional base of Modal's gRPC-mapped errors (skylift has no gRPC): a deliberate difference.
SKIP_EXCEPTIONS = {"_GRPCErrorWrapper"}


def is_skylift() -> bool:
    import modal

    return modal.__name__ == "skylift"


def kind(obj: Any) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "value"


def public_modules() -> list[str]:
    import modal

    names = ["modal"]
    for info in pkgutil.walk_packages(modal.__path__, "modal.", onerror=lambda name: None):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or any(info.name == s or info.name.startswith(s + ".")
                                                         for s in SKIP_MODULES):
            continue
        names.append(info.name)
    return sorted(names)


def import_module(name: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except Exception:  # ImportError, or a module that fails to import: absent either way
        return None


def module_names(module: Any) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_") and (
                 (getattr(v, "__module__", None) == module.__name__ and (inspect.isclass(v) or callable(v)))
                 or type(v).__module__ == module.__name__)]  # an instance, e.g. modal.config.config
    return sorted(n for n in names if not n.startswith("_") or n == "__version__")


def get(obj: Any, name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return getattr(obj, name)
        except Exception:
            return _MISSING


_MISSING = object()
UNCHECKED = "unchecked"


def member_kind(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        if name in vars(klass):
            raw = vars(klass)[name]
            if isinstance(raw, (classmethod, staticmethod)):
                return type(raw).__name__
            if isinstance(raw, property):
                return "property"
            return kind(raw) if not inspect.isfunction(raw) else "method"
    return "value"


def class_members(cls: type) -> list[str]:
    base = set(dir(object)) | set(dir(BaseException))
    return sorted(n for n in dir(cls) if not n.startswith("_") and n not in base and n not in CLASS_MEMBER_SKIP)


def params(fn: Any) -> dict[str, str] | None:
    if isinstance(fn, property):
        return {UNCHECKED: UNCHECKED}  # a callable made per instance (skylift's `Function.remote`)
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    out = {}
    for p in sig.parameters.values():
        if p.name in ("self", "cls") or p.name.startswith("_"):
            continue
        out[p.name] = {p.VAR_POSITIONAL: "*args", p.VAR_KEYWORD: "**kwargs"}.get(p.kind, p.kind.name.lower())
    return out


def exc_bases(cls: type) -> list[str]:
    import modal.exception

    names = set()
    for klass in cls.__mro__[1:]:
        if klass.__module__ in (modal.exception.__name__, "builtins") and not klass.__name__.startswith("_") \
                and klass is not object:
            names.add(klass.__name__)
    return sorted(names)


def cli_root() -> Any:
    if is_skylift():
        from skylift.cli.main import cli

        return cli
    from modal.cli.entry_point import entrypoint_cli

    return entrypoint_cli


def walk_cli(command: Any, path: str, out: dict[str, Any]) -> None:
    import click

    out[f"cli:{path}"] = "group" if isinstance(command, click.Group) else "command"
    for param in command.params:
        if isinstance(param, click.Argument):
            out[f"cliopt:{path} ARG:{param.name}"] = "argument"
        elif not param.hidden if hasattr(param, "hidden") else True:
            longest = max(param.opts + param.secondary_opts, key=len)
            out[f"cliopt:{path} {longest}"] = "flag" if getattr(param, "is_flag", False) else "option"
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                walk_cli(sub, f"{path} {name}", out)


def dump_callable(key: str, obj: Any, out: dict[str, Any]) -> None:
    found = params(obj)
    if inspect.isclass(obj) and found and set(found.values()) <= {"*args", "**kwargs"}:
        return  # Modal's wrapped classes take (*args, **kwargs): not made by users, nothing to compare
    for name, value in (found or {}).items():
        out[f"param:{key}({name})"] = value


def enumerate_api() -> dict[str, Any]:
    out: dict[str, Any] = {}
    import modal.exception

    for modname in public_modules():
        module = import_module(modname)
        if module is None:
            continue
        out[f"module:{modname}"] = "module"
        for name in module_names(module):
            value = get(module, name)
            if value is _MISSING:
                continue
            out[f"attr:{modname}.{name}"] = kind(value)
            if modname != "modal":
                continue  # classes and functions are dumped once, under their top-level name
            if inspect.isclass(value):
                dump_callable(f"modal.{name}", value, out)
                for member in class_members(value):
                    out[f"member:modal.{name}.{member}"] = member_kind(value, member)
                    attr = get(value, member)
                    if callable(attr) and not inspect.isclass(attr):
                        dump_callable(f"modal.{name}.{member}", attr, out)
                    if get(attr, "aio") is not _MISSING:
                        out[f"aio:modal.{name}.{member}"] = "aio"
            elif callable(value) and not inspect.ismodule(value):
                dump_callable(f"modal.{name}", value, out)
    for name, value in vars(modal.exception).items():
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == "modal.exception" \
                and name not in SKIP_EXCEPTIONS:
            out[f"attr:modal.exception.{name}"] = "class"
            for base in exc_bases(value):
                out[f"excbase:modal.exception.{name}<{base}"] = "base"
    walk_cli(cli_root(), "modal", out)
    return out


def resolve(dotted: str) -> Any:
    """`modal.App.function` → the object, importing modules as needed; _MISSING if any part is absent."""
    parts = dotted.split(".")
    obj: Any = None
    for i in range(len(parts), 0, -1):
        obj = import_module(".".join(parts[:i])) if i > 0 else None
        if obj is not None:
            rest = parts[i:]
            break
    else:
        return _MISSING
    for part in rest:
        obj = get(obj, part)
        if obj is _MISSING:
            return _MISSING
    return obj


def probe(reference: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cli: dict[str, Any] = {}
    walk_cli(cli_root(), "modal", cli)
    signatures: dict[str, dict[str, str] | None] = {}
    for key in reference:
        what, _, rest = key.partition(":")
        if what == "module":
            if import_module(rest) is not None:
                out[key] = "module"
        elif what == "attr":
            value = resolve(rest)
            if value is not _MISSING:
                out[key] = kind(value)
        elif what == "member":
            owner, _, name = rest.rpartition(".")
            cls = resolve(owner)
            if cls is not _MISSING and inspect.isclass(cls) and get(cls, name) is not _MISSING:
                out[key] = member_kind(cls, name)
        elif what == "param":
            target, _, name = rest[:-1].partition("(")
            if target not in signatures:
                obj = resolve(target)
                signatures[target] = None if obj is _MISSING else params(obj)
            found = signatures[target]
            if found is None:
                continue
            if UNCHECKED in found:
                out[key] = UNCHECKED
            elif name in found:
                out[key] = found[name]
            elif reference[key] in ("*args", "**kwargs") and reference[key] in found.values():
                out[key] = reference[key]  # a * or ** parameter's name is nobody's business
            elif "**kwargs" in found.values() and reference[key] in ("keyword_only", "positional_or_keyword"):
                out[key] = "**kwargs"
        elif what == "aio":
            owner, _, name = rest.rpartition(".")
            cls = resolve(owner)
            attr = get(cls, name) if cls is not _MISSING else _MISSING
            if isinstance(attr, property):
                out[key] = UNCHECKED
            elif attr is not _MISSING and get(attr, "aio") is not _MISSING:
                out[key] = "aio"
        elif what == "excbase":
            exc_name, _, base = rest.rpartition("<")
            cls = resolve(exc_name)
            if cls is not _MISSING and inspect.isclass(cls) and base in exc_bases(cls):
                out[key] = "base"
        elif what in ("cli", "cliopt") and key in cli:
            out[key] = cli[key]
    return out


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--probe"]:
        with open(args[1]) as f:
            result = probe(json.load(f))
    else:
        result = enumerate_api()
    json.dump(result, sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
