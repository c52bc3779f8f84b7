"""Find what `skylift run/deploy/shell REF` names: `file.py`, `file.py::fn`, `file.py::app.fn`,
`file.py::Cls.method`, or `-m package.module[::fn]`.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import _modal_alias
from ..app import App, LocalEntrypoint
from ..cls import Cls
from ..exception import InvalidError
from ..functions import Function


@dataclass
class Runnable:
    app: App
    entrypoint: LocalEntrypoint | None = None
    function: Function | None = None
    cls: Cls | None = None
    method: str | None = None

    @property
    def label(self) -> str:
        if self.entrypoint is not None:
            return self.entrypoint.name
        if self.cls is not None:
            return f"{self.cls._tag}.{self.method}"
        assert self.function is not None
        return self.function.tag


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def split_ref(ref: str) -> tuple[str, str | None]:
    if "::" in ref:
        target, _, name = ref.partition("::")
        return target, name or None
    return ref, None


def import_ref(target: str, *, is_module: bool) -> ModuleType:
    """Import a script by path (as a module named after the file, like Modal) or a module by name.

    The program's `import modal` imports skylift (`_modal_alias`: the rule and its opt-out)."""
    _modal_alias.install()
    if (not is_module and _MODULE_NAME.fullmatch(target) and not target.endswith(".py")
            and not Path(target).exists()):
        # `skylift run pkg.module`: what older Modal versions accepted, with this warning.
        sys.stderr.write(f"DeprecationWarning: pass a module with -m (`-m {target}`); importing {target!r} as a "
                         "module without -m is deprecated\n")
        is_module = True
    if is_module:
        sys.path.insert(0, str(Path.cwd()))
        try:
            return importlib.import_module(target)
        except ImportError as exc:
            raise InvalidError(f"can't import module {target!r}: {exc}") from exc
    path = Path(target)
    if not path.exists():
        raise InvalidError(f"no such file: {target}. Pass a Python file (`skylift run app.py`) or a module with -m")
    if path.is_dir() or path.suffix != ".py":
        raise InvalidError(f"{target} is not a .py file; pass a Python file, or a module with -m")
    path = path.resolve()
    module_name = path.stem
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidError(f"can't load {target} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _apps_in(module: ModuleType) -> dict[str, App]:
    return {name: value for name, value in vars(module).items() if isinstance(value, App)}


def find_app(module: ModuleType, *, app_name: str | None = None) -> App:
    apps = _apps_in(module)
    if app_name:
        if app_name not in apps:
            raise InvalidError(f"{module.__name__} has no App named {app_name!r} (it has: {', '.join(apps) or 'none'})")
        return apps[app_name]
    if not apps:
        raise InvalidError(f"{module.__name__} defines no skylift App; create one with `app = modal.App(\"name\")`")
    if "app" in apps:
        return apps["app"]
    if len(apps) > 1:
        raise InvalidError(f"{module.__name__} defines several Apps ({', '.join(apps)}); "
                           f"name one, e.g. FILE::{next(iter(apps))}")
    return next(iter(apps.values()))


def find_runnable(module: ModuleType, name: str | None) -> Runnable:
    if name is None:
        app = find_app(module)
        return _pick_default(app, module)
    parts = name.split(".")
    apps = _apps_in(module)
    if parts[0] in apps:
        app = apps[parts[0]]
        if len(parts) == 1:
            return _pick_default(app, module)
        return _resolve_in_app(app, ".".join(parts[1:]), module)
    app = _owning_app(module, parts[0])
    return _resolve_in_app(app, name, module)


def _owning_app(module: ModuleType, attr: str) -> App:
    value = getattr(module, attr, None)
    for candidate in (getattr(value, "app", None), getattr(value, "_app", None)):
        if isinstance(candidate, App):
            return candidate
    return find_app(module)


def _resolve_in_app(app: App, name: str, module: ModuleType) -> Runnable:
    if name in app.registered_entrypoints:
        return Runnable(app, entrypoint=app.registered_entrypoints[name])
    if name in app.registered_functions:
        return Runnable(app, function=app.registered_functions[name])
    if "." in name:
        cls_name, method = name.split(".", 1)
        if cls_name in app.registered_classes:
            c = app.registered_classes[cls_name]
            if method not in c._method_names():
                raise InvalidError(f"{cls_name} has no @modal.method() named {method!r} "
                                   f"(it has: {', '.join(c._method_names()) or 'none'})")
            return Runnable(app, cls=c, method=method)
    raw = getattr(module, name.split(".")[0], None)
    if raw is not None and callable(raw):
        raise InvalidError(f"{name!r} in {module.__name__} is not a skylift function: decorate it with "
                           "@app.function() or @app.local_entrypoint()")
    choices = sorted([*app.registered_entrypoints, *app.registered_functions,
                      *(f"{c}.{m}" for c, cls in app.registered_classes.items() for m in cls._method_names())])
    raise InvalidError(f"{module.__name__} has no function or entrypoint named {name!r}; choose one of: "
                       f"{', '.join(choices) or '(none)'}")


def _pick_default(app: App, module: ModuleType) -> Runnable:
    entrypoints = app.registered_entrypoints
    if len(entrypoints) == 1:
        return Runnable(app, entrypoint=next(iter(entrypoints.values())))
    if len(entrypoints) > 1:
        raise InvalidError(f"{module.__name__} has several local entrypoints ({', '.join(entrypoints)}); "
                           f"pick one with FILE::NAME")
    functions = app.registered_functions
    methods = [(c, m) for c in app.registered_classes.values() for m in c._method_names()]
    if len(functions) == 1 and not methods:
        return Runnable(app, function=next(iter(functions.values())))
    if not functions and len(methods) == 1:
        return Runnable(app, cls=methods[0][0], method=methods[0][1])
    choices = sorted([*functions, *(f"{c._tag}.{m}" for c, m in methods)])
    raise InvalidError(f"{module.__name__} has no local entrypoint and several functions; pick one with FILE::NAME "
                       f"({', '.join(choices) or 'none defined'})")


def describe(value: Any) -> str:
    return type(value).__name__
