"""`modal.config.config`: Modal's settings, read where skylift reads them.

Each key is read from `SKYLIFT_<KEY>`, then Modal's `MODAL_<KEY>`, then its default; the keys skylift
acts on (`environment`, `server_url`, `token_secret`, `task_id`, `force_build`, `traceback`,
`logs_timeout`, `image_builder_version`) are the values skylift uses. skylift has no `.modal.toml`
profiles: `profile=` names only the implicit one ("default").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .exception import InvalidError, NotFoundError

PROFILE = "default"


def _bool(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no", "off")


# key -> (default, transform), Modal 1.6.4's keys and defaults.
_KEYS: dict[str, tuple[Any, Callable[[str], Any]]] = {
    "server_url": (None, str), "token_id": (None, str), "token_secret": (None, str),
    "loglevel": ("WARNING", str.upper), "log_format": ("STRING", str.upper), "log_pattern": (None, str),
    "environment": (None, str), "traceback": (False, _bool), "image_builder_version": (None, str),
    "force_build": (False, _bool), "ignore_cache": (False, _bool), "default_cloud": (None, str),
    "logs_timeout": (10.0, float), "serve_timeout": (None, float), "heartbeat_interval": (15.0, float),
    "async_warnings": (True, _bool), "build_validation": ("error", str), "sync_entrypoint": (None, str),
    "worker_id": (None, str), "task_id": (None, str), "image_id": (None, str),
}
# Where skylift's own name for a key differs from SKYLIFT_<KEY>.
_SKYLIFT_NAMES = {"token_secret": "SKYLIFT_TOKEN"}


class Config:
    """Read Modal's settings: `config["environment"]`, `config.get("traceback")`, `config.to_dict()`."""

    def get(self, key: str, *, profile: str | None = None, use_env: bool = True) -> Any:
        if key not in _KEYS:
            raise KeyError(f"modal.config has no setting {key!r}; known: {', '.join(sorted(_KEYS))}")
        if profile not in (None, PROFILE):
            raise NotFoundError(f"no profile named {profile!r}: skylift has one ({PROFILE!r}); see `skylift token`")
        default, transform = _KEYS[key]
        if use_env:
            for name in (_SKYLIFT_NAMES.get(key, f"SKYLIFT_{key.upper()}"), f"MODAL_{key.upper()}"):
                raw = os.environ.get(name)
                if raw is not None and raw != "":
                    try:
                        return transform(raw)
                    except ValueError:
                        raise InvalidError(f"{name}={raw!r} is not a valid value for {key!r}") from None
        if key == "environment":
            from . import config as settings

            return settings._environment_override
        return default

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def override_locally(self, key: str, value: str) -> None:
        """Set a setting for this process (and the processes it starts), as `MODAL_<KEY>` does."""
        if key not in _KEYS:
            raise KeyError(f"modal.config has no setting {key!r}")
        os.environ[f"MODAL_{key.upper()}"] = value
        os.environ.pop(_SKYLIFT_NAMES.get(key, f"SKYLIFT_{key.upper()}"), None)

    def __repr__(self) -> str:
        return repr(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {key: self.get(key) for key in _KEYS}


config = Config()
