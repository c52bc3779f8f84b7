"""`import modal` answered by skylift: `modal` is `skylift`, `modal.X` is `skylift.X`.

A meta-path finder placed first on `sys.meta_path` maps every `modal[.X]` import to the skylift module
of the same name (a few Modal modules have another name here: `_RENAMED`). The module objects are
shared, not copied, so `modal.App is skylift.App` and `isinstance` works across both names; a
`modal.X` without a skylift counterpart fails as a missing module does.

The rule (docs/modal-compatibility.md): the alias is on in the CLI process, in every container and under
`python -m skylift.compat`. `SKYLIFT_MODAL_ALIAS=0` turns it off where the real `modal` package is
installed, so that `import modal` imports Modal's client; without that package there is nothing else
`import modal` could mean, and the alias stays on.

This module runs at every container start: it imports nothing beyond what the interpreter has loaded.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

ENV_ALIAS = "SKYLIFT_MODAL_ALIAS"
# Modal modules whose skylift counterpart has another name.
_RENAMED = {"client": "_client"}


def target_name(fullname: str) -> str:
    """The skylift module that answers `fullname` (`modal.exception` → `skylift.exception`)."""
    rest = fullname[len("modal"):]
    head, dot, tail = rest[1:].partition(".")
    if head in _RENAMED:
        rest = "." + _RENAMED[head] + dot + tail
    return "skylift" + rest


class _AliasLoader:
    """Loads `modal.X` by importing `skylift.X` and putting that very module under the alias's name
    (the import system returns what `sys.modules` holds once `exec_module` returns)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a throwaway module; `exec_module` swaps in the real one

    def exec_module(self, module: ModuleType) -> None:
        sys.modules[module.__name__] = importlib.import_module(self.target)


class ModalAliasFinder:
    """`sys.meta_path` entry that answers `modal` and `modal.*` with skylift's modules."""

    @classmethod
    def find_spec(cls, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "modal" and not fullname.startswith("modal."):
            return None
        name = target_name(fullname)
        if name not in sys.modules and "." in name and importlib.util.find_spec(name) is None:
            return None  # no counterpart: ModuleNotFoundError, as for any missing module
        # (a duck-typed loader: importlib.abc isn't loaded at a container's start, and the import system needs
        # only these two methods)
        return importlib.machinery.ModuleSpec(fullname, cast("Loader", _AliasLoader(name)), is_package=True)


def _real_modal_installed() -> bool:
    return importlib.machinery.PathFinder.find_spec("modal") is not None


def wanted() -> bool:
    """Whether `import modal` should mean skylift here (the rule in the module docstring)."""
    if os.environ.get(ENV_ALIAS, "").strip().lower() not in ("0", "false", "no", "off"):
        return True
    return not _real_modal_installed()


def installed() -> bool:
    return any(finder is ModalAliasFinder for finder in sys.meta_path)


def install(*, force: bool = False) -> bool:
    """Make `import modal` import skylift in this interpreter; returns whether the alias is on.

    Idempotent. Without `force`, follows the rule (`wanted()`). A real `modal` that is already
    imported is left in place: its objects exist and can't be swapped for skylift's.
    """
    if installed():
        return True
    if not force and not wanted():
        return False
    existing = sys.modules.get("modal")
    if existing is not None and not getattr(existing, "__name__", "").startswith("skylift"):
        return False
    sys.meta_path.insert(0, ModalAliasFinder)
    return True


def uninstall() -> None:
    """Remove the alias and forget the `modal` modules it answered (tests, and `compat` opt-outs)."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not ModalAliasFinder]
    for name, module in list(sys.modules.items()):
        if (name == "modal" or name.startswith("modal.")) and getattr(module, "__name__", "").startswith("skylift"):
            del sys.modules[name]
