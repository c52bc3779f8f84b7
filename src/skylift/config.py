"""Where the SDK finds its control plane and which environment it works in.

Resolution order, highest first:
  * inside a container: `SKYLIFT_SERVER_URL` + `SKYLIFT_TASK_TOKEN` (set by the worker);
  * `SKYLIFT_SERVER_URL` + `SKYLIFT_TOKEN`: a shared server started with `skylift server`;
  * otherwise the embedded platform under `SKYLIFT_HOME` (default `~/.skylift`), started on demand.
The environment is `--env`, then `SKYLIFT_ENVIRONMENT` / `MODAL_ENVIRONMENT`, then `main`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._protocol import api

_environment_override: str | None = None


def home() -> Path:
    return Path(os.environ.get("SKYLIFT_HOME") or Path.home() / ".skylift").expanduser()


def environment_name(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if _environment_override:
        return _environment_override
    return os.environ.get("SKYLIFT_ENVIRONMENT") or os.environ.get("MODAL_ENVIRONMENT") or api.DEFAULT_ENVIRONMENT


def set_environment_override(name: str | None) -> None:
    """Used by the CLI's `--env` so that every object the program creates lands in that environment."""
    global _environment_override
    _environment_override = name


def in_container() -> bool:
    return os.environ.get(api.ENV_TASK_ID) is not None


def version() -> str:
    # A constant, not importlib.metadata: that import alone costs ~12 ms of every cold start.
    from ._version import __version__

    return __version__


def __getattr__(name: str) -> object:
    # `modal.config.config` / `modal.config.Config` (Modal's settings object), loaded on first use.
    if name in ("config", "Config"):
        from . import _config_object

        return getattr(_config_object, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
