"""Secrets: `secret.create`, and the one place their values are decrypted (a container's env).

    secret.create {name?, environment, values: {KEY: value}, overwrite?} -> {object_id}

A named secret is unique in its environment (`overwrite` replaces its values; containers started
afterwards see them). Without a name the secret is anonymous (`Secret.from_dict`,
`from_dotenv`, `from_local_environ`): the same values in the same environment give the same id,
found through a keyed fingerprint, so re-running an app stores nothing new.

Values are sealed (`secret_box`) before they reach the database; the control plane keeps only the
sealed bytes in memory and opens them in `env_for`, when a TaskSpec is built. No answer, log line
or error message carries a value.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from ..._protocol.rpc import ErrorCode, RpcError
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..params import Params, invalid, not_found
from .object_store import ObjectRecord, SecretRecord
from .objects import Objects, check_name
from .secret_box import SecretBox, SecretKeyError

log = logging.getLogger("skylift.server")

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SECRET_BYTES = 1024 * 1024


class SecretApi:
    def __init__(self, objects: Objects, box: SecretBox) -> None:
        self.objects = objects
        self.box = box
        self._sealed: dict[str, SecretRecord] = {}
        objects.on_get["secret"] = self._check_required
        objects.on_delete["secret"] = self._forget

    def _forget(self, record: ObjectRecord) -> None:
        self._sealed.pop(record.object_id, None)

    def routes(self) -> Routes:
        return {"secret.create": self.create}

    def load(self) -> None:
        """At start: the sealed values of every secret (read directly, before the loop serves)."""
        self._sealed = {s.secret_id: s for s in self.objects.store.all_secrets()}

    @staticmethod
    def _values(raw: dict[str, Any]) -> dict[str, str]:
        return SecretApi.values_param("secret.create", raw)

    @staticmethod
    def values_param(method: str, raw: dict[str, Any]) -> dict[str, str]:
        """The checked `values` of a request: env-var names to strings, at most MAX_SECRET_BYTES."""
        values = Params(method, raw).mapping("values")
        size = 0
        for key, value in values.items():
            if not isinstance(key, str) or not ENV_NAME_RE.match(key):
                raise invalid(method, f"secret key {key!r} is not a valid environment variable name "
                                               "(letters, digits and '_', not starting with a digit)")
            if not isinstance(value, str):
                raise invalid(method, f"the value of {key!r} must be a string, got {type(value).__name__}")
            size += len(key) + len(value.encode())
        if size > MAX_SECRET_BYTES:
            raise invalid(method, f"a secret holds at most {MAX_SECRET_BYTES // 1024} KiB of keys and values")
        return dict(values)

    async def _seal(self, record: ObjectRecord, values: dict[str, str]) -> None:
        sealed = SecretRecord(record.object_id, sorted(values), self.box.seal(record.object_id, values), time.time())
        await self.objects.run(self.objects.store.put_secret, sealed)
        self._sealed[record.object_id] = sealed

    async def merge(self, record: ObjectRecord, values: dict[str, str]) -> None:
        """`Secret.update`: these keys set or replaced, the others kept (containers started later see them)."""
        sealed = self._sealed.get(record.object_id)
        current = self.box.open(record.object_id, sealed.sealed) if sealed is not None else {}
        merged = {**current, **values}
        if sum(len(k) + len(v.encode()) for k, v in merged.items()) > MAX_SECRET_BYTES:
            raise invalid("secret.update", f"a secret holds at most {MAX_SECRET_BYTES // 1024} KiB of keys and values")
        await self._seal(record, merged)

    async def create(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("secret.create", raw)
        values = self._values(raw)
        environment = p.environment()
        name = p.opt_text("name")
        store = self.objects.store
        if name is None:
            fingerprint = self.box.fingerprint(environment, values)
            found = await self.objects.run(store.find_fingerprint, "secret", fingerprint)
            if found is not None and found.object_id in self._sealed:
                return {"object_id": found.object_id}
            record = await self.objects.create("secret", None, environment, fingerprint=fingerprint)
            await self._seal(record, values)
            return {"object_id": record.object_id}
        check_name("secret.create", "secret", name)
        existing = await self.objects.run(store.find_object, "secret", environment, name)
        if existing is not None:
            if not p.flag("overwrite"):
                raise RpcError(ErrorCode.CONFLICT, f"Secret {name!r} already exists in environment {environment!r}; "
                                                   "pass --force (overwrite=True) to replace its values")
            await self._seal(existing, values)
            return {"object_id": existing.object_id}
        record = await self.objects.create("secret", name, environment)
        await self._seal(record, values)
        return {"object_id": record.object_id}

    def _check_required(self, record: ObjectRecord, p: Params) -> None:
        required = p.strings("required_keys") if p.raw.get("required_keys") is not None else []
        sealed = self._sealed.get(record.object_id)
        have = set(sealed.keys) if sealed is not None else set()
        missing = [k for k in required if k not in have]
        if missing:
            raise not_found(f"Secret {record.name!r} is missing required key(s) {', '.join(missing)}; it has "
                            f"{', '.join(sorted(have)) or 'no keys'}. Add them with `skylift secret create "
                            f"{record.name} --force ...`")

    def env_for(self, secret_ids: list[str]) -> tuple[dict[str, str], list[str]]:
        """The variables of these secrets, later ones overriding earlier ones; and the ids that are gone."""
        env: dict[str, str] = {}
        missing: list[str] = []
        for secret_id in secret_ids:
            sealed = self._sealed.get(secret_id)
            if sealed is None:
                missing.append(secret_id)
                continue
            try:
                env.update(self.box.open(secret_id, sealed.sealed))
            except SecretKeyError as exc:
                log.error("%s", exc)
                missing.append(secret_id)
        return env, missing

    def has(self, secret_id: str) -> bool:
        return secret_id in self._sealed
