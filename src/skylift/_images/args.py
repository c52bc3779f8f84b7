"""What an `Image`'s build steps are given, checked and put in wire form; one `Layer` per step.

Every check raises `InvalidError` naming the method and the fix, at definition time.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

from .._context import is_local
from .._resources import parse_gpu
from ..exception import InvalidError
from .files import FileList

SUPPORTED_PYTHON_SERIES = ("3.10", "3.11", "3.12", "3.13", "3.14")
_PYTHON_VERSION = re.compile(r"^3\.\d{1,2}(\.\d{1,2})?$")

Resolved = tuple[dict[str, Any], FileList]


class Layer:
    """One build step. Its args and files come from `make`, run at once locally, lazily remotely."""

    __slots__ = ("_make", "_resolved", "copy", "force_build", "refs", "step")

    def __init__(self, step: str, make: Callable[[], Resolved], *, force_build: bool,
                 refs: dict[str, Any] | None = None, copy: bool = True) -> None:
        self.step = step
        self.force_build = force_build
        self.refs = refs or {}
        self.copy = copy
        self._make = make
        self._resolved: Resolved | None = None
        if is_local():
            self.resolve()

    def resolve(self) -> Resolved:
        if self._resolved is None:
            self._resolved = self._make()
        return self._resolved


def env_force_build() -> bool:
    return any(os.environ.get(name, "") not in ("", "0", "false", "False")
               for name in ("MODAL_FORCE_BUILD", "SKYLIFT_FORCE_BUILD"))


def validate_python_version(version: str | None, *, what: str, allow_micro: bool = True) -> str:
    if version is None:
        version = "{}.{}".format(*sys.version_info)
        shown = f"your local Python {version}"
    else:
        shown = repr(version)
        if not isinstance(version, str):
            raise InvalidError(f"{what}: python_version must be a string like \"3.12\", not "
                               f"{type(version).__name__} {version!r}.")
        if not _PYTHON_VERSION.match(version) or (not allow_micro and version.count(".") > 1):
            form = '"3.X"' if not allow_micro else '"3.X" or "3.X.Y"'
            raise InvalidError(f"{what}: invalid Python version {version!r}; write it as {form}, e.g. \"3.12\".")
    series = ".".join(version.split(".")[:2])
    if series not in SUPPORTED_PYTHON_SERIES:
        raise InvalidError(f"{what}: unsupported Python version {shown}; supported series are "
                           f"{', '.join(SUPPORTED_PYTHON_SERIES)}. Pass python_version=\"3.12\" (or another).")
    return version


def flatten(what: str, items: Sequence[str | list[str]]) -> list[str]:
    flat: list[str] = []
    for item in items:
        if isinstance(item, str):
            flat.append(item)
        elif isinstance(item, (list, tuple)) and all(isinstance(x, str) for x in item):
            flat.extend(item)
        else:
            raise InvalidError(f"{what}: arguments must be strings or lists of strings, got {item!r}.")
    return flat


def no_flags(what: str, packages: list[str]) -> None:
    flags = [p for p in packages if p.startswith("-")]
    if flags:
        raise InvalidError(f"Package list for `Image.{what}` cannot contain other arguments ({flags}); "
                           f"pass them with extra_options, e.g. {what}(\"pkg\", extra_options=\"{flags[0]}\").")


def build_env(what: str, env: dict[str, str | None] | None) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise InvalidError(f"{what}: env must be a dict of str to str, got {type(env).__name__}.")
    bad = [k for k, v in env.items() if not isinstance(k, str) or not (v is None or isinstance(v, str))]
    if bad:
        raise InvalidError(f"{what}: env values must be strings (or None to leave unset); bad keys: {bad}.")
    return {k: v for k, v in env.items() if v is not None}


def secret_list(what: str, secrets: Sequence[Any] | None) -> list[Any]:
    if secrets is None:
        return []
    if not isinstance(secrets, (list, tuple)):
        raise InvalidError(f"{what}: secrets must be a list, e.g. secrets=[modal.Secret.from_name(\"x\")].")
    return list(secrets)


def volume_map(what: str, volumes: dict[Any, Any] | None) -> dict[str, Any]:
    if not volumes:
        return {}
    if not isinstance(volumes, dict):
        raise InvalidError(f"{what}: volumes must be a dict of absolute path to Volume.")
    out: dict[str, Any] = {}
    for path, volume in volumes.items():
        text = str(path)
        if not PurePosixPath(text).is_absolute():
            raise InvalidError(f"{what}: volume mount path {text!r} must be absolute, e.g. \"/data\".")
        out[text] = volume
    return out


def step_refs(secrets: list[Any], volumes: dict[str, Any] | None = None) -> dict[str, Any]:
    refs: dict[str, Any] = {}
    if secrets:
        refs["secret_ids"] = secrets
    if volumes:
        refs["volume_ids"] = volumes
    return refs


def remote_path(what: str, remote_path: str | PurePosixPath) -> str:
    text = str(remote_path)
    if not PurePosixPath(text).is_absolute():
        raise InvalidError(f"image.{what}() needs an absolute remote_path, e.g. \"/root/data\"; got {text!r}.")
    return text


def pip_args(step: str, find_links: str | None, index_url: str | None, extra_index_url: str | None,
              pre: bool, extra_options: str) -> dict[str, Any]:
    for name, value in (("find_links", find_links), ("index_url", index_url),
                        ("extra_index_url", extra_index_url)):
        if value is not None and not isinstance(value, str):
            raise InvalidError(f"Image.{step}({name}={value!r}): pass a URL string.")
    if not isinstance(extra_options, str):
        raise InvalidError(f"Image.{step}(extra_options={extra_options!r}): pass the options as one string.")
    return {"index_url": index_url, "extra_index_url": extra_index_url, "find_links": find_links,
            "pre": bool(pre), "extra_options": extra_options}

def step_args(step: str, env: dict[str, str | None] | None, gpu: str | list[str] | None) -> dict[str, Any]:
    return {"env": build_env(f"Image.{step}()", env), "gpu": parse_gpu(gpu)}
