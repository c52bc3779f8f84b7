"""`modal.Secret`: environment variables for containers, stored encrypted by the control plane.

Example:
    >>> import skylift as modal
    >>> app = modal.App("secrets-demo")
    >>> @app.function(secrets=[modal.Secret.from_name("api-keys"), modal.Secret.from_dict({"MODE": "prod"})])
    ... def f() -> str:
    ...     import os
    ...     return os.environ["MODE"]

Secrets passed to a function become environment variables of its containers; a later secret in
the list overrides an earlier one, and the function's `env=` overrides them all. Named secrets
are made with `skylift secret create NAME KEY=VALUE...`; `from_dict`, `from_dotenv` and
`from_local_environ` make anonymous ones when the app is created. Values are encrypted at rest
and decrypted only to start a container.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from . import config
from ._aio import blocking
from ._client import Client
from ._object import _Object
from .exception import InvalidError


def parse_dotenv(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines (python-dotenv's common subset: `export`, quotes, `#` comments)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if value[:1] in ("'", '"') and value.endswith(value[0]) and len(value) >= 2:
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.encode().decode("unicode_escape") if "\\" in value else value
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _find_dotenv(path: str | os.PathLike[str] | None, filename: str) -> Path | None:
    if path is not None:
        p = Path(path)
        return p / filename if p.is_dir() else p
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / filename).is_file():
            return directory / filename
    return None


class Secret(_Object):
    """A set of environment variables for containers (Modal's `modal.Secret`)."""

    _kind: ClassVar[str] = "secret"
    _title: ClassVar[str] = "Secret"
    objects: ClassVar[SecretManager]

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None, required_keys: Sequence[str] = (),
                  namespace: Any = None, client: Any = None) -> Secret:
        """The named secret (`skylift secret create NAME ...`), checked for `required_keys` on first use."""
        return cls._by_name(name, environment_name, False, {"required_keys": list(required_keys)})

    @blocking
    async def update(self, env_dict: dict[str, str]) -> None:
        """Set or replace these keys of this named secret, keeping the others; containers started
        from now on see the new values."""
        if not isinstance(env_dict, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in env_dict.items()):
            raise InvalidError(f"{self!r}.update() takes a dict of str to str")
        await self._call("secret.update", {"values": dict(env_dict)})

    @classmethod
    def _anonymous(cls, values: dict[str, str], label: str) -> Secret:
        async def load(client: Client) -> str:
            got = await client.call("secret.create", {"values": values, "environment": config.environment_name()})
            return str(got["object_id"])

        secret = cls(name=None, environment_name=None, loader=load)
        secret._label = label
        return secret

    _label: str = ""

    def __repr__(self) -> str:
        return f"Secret.{self._label}" if self._label else super().__repr__()

    @classmethod
    def from_dict(cls, env_dict: dict[str, str | None] | None = None) -> Secret:
        """A secret holding these variables (None values are left out)."""
        env_dict = dict(env_dict or {})
        for key, value in env_dict.items():
            if not isinstance(key, str) or not (value is None or isinstance(value, str)):
                raise InvalidError("Secret.from_dict takes a dict of str to str (or None to leave a key out)")
        values = {k: v for k, v in env_dict.items() if v is not None}
        return cls._anonymous(values, f"from_dict({sorted(values)})")

    @classmethod
    def from_local_environ(cls, env_keys: list[str]) -> Secret:
        """The named variables of this process's environment (empty inside a container)."""
        if config.in_container():
            return cls._anonymous({}, "from_local_environ([])")
        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise InvalidError(f"Secret.from_local_environ: {', '.join(missing)} not set in the local environment")
        return cls._anonymous({k: os.environ[k] for k in env_keys}, f"from_local_environ({list(env_keys)})")

    @classmethod
    def from_dotenv(cls, path: str | os.PathLike[str] | None = None, *, filename: str = ".env",
                    client: Any = None) -> Secret:
        """The variables of a .env file: `path` (a file or its directory), else the nearest
        `filename` in the working directory or its parents. Read when the app is created."""
        secret = cls(name=None, environment_name=None)
        secret._label = f"from_dotenv({str(path) if path else filename!r})"

        async def load(client: Client) -> str:
            found = _find_dotenv(path, filename)
            if found is None or not found.is_file():
                raise InvalidError(f"Secret.from_dotenv: no {filename} file found "
                                   f"{'at ' + str(path) if path else 'in ' + str(Path.cwd()) + ' or its parents'}")
            values = parse_dotenv(found.read_text())
            got = await client.call("secret.create", {"values": values, "environment": config.environment_name()})
            return str(got["object_id"])

        secret._loader = load
        return secret


class SecretManager:
    """`Secret.objects`: create, list and delete named secrets."""

    @blocking
    async def create(self, name: str, env_dict: dict[str, str], *, environment_name: str | None = None,
                     allow_existing: bool = False) -> None:
        """Create a named secret; `allow_existing` replaces the values of an existing one."""
        from . import _options

        _options.check_object_name(name, "Secret")
        await Client.from_env().call("secret.create", {"name": name, "values": dict(env_dict),
                                                       "environment": config.environment_name(environment_name),
                                                       "overwrite": allow_existing})

    @blocking
    async def list(self, *, environment_name: str | None = None) -> Any:
        got = await Client.from_env().call("object.list", {"kind": "secret",
                                                           "environment": config.environment_name(environment_name)})
        return [Secret(name=o["name"], environment_name=environment_name, object_id=o["object_id"])
                for o in got["objects"]]

    @blocking
    async def delete(self, name: str, *, allow_missing: bool = False, environment_name: str | None = None) -> None:
        await Client.from_env().call("object.delete", {"kind": "secret", "name": name, "allow_missing": allow_missing,
                                                       "environment": config.environment_name(environment_name)})


Secret.objects = SecretManager()
