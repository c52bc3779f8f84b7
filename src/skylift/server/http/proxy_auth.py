"""Proxy-auth tokens: what `requires_proxy_auth=True` endpoints demand (Modal's `Modal-Key`/`Modal-Secret`).

`skylift token create-proxy` mints a token id (`wk-…`) and a secret (`ws-…`); the secret is shown
once and only its sha256 is stored. A request to a protected endpoint must carry both headers;
the check is a dict lookup and a constant-time compare, so it costs nothing on the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING, Any

from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..params import Params, not_found
from .web_store import ProxyTokenRecord

if TYPE_CHECKING:
    from ..store import Database
    from .web_store import WebStore

KEY_HEADER = b"modal-key"
SECRET_HEADER = b"modal-secret"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ProxyTokens:
    def __init__(self, db: Database, store: WebStore) -> None:
        self._db = db
        self._store = store
        self._hashes: dict[str, str] = {}

    def load(self) -> None:
        self._hashes = {r.token_id: r.secret_hash for r in self._store.list_proxy_tokens()}

    def verify(self, token_id: bytes | None, secret: bytes | None) -> bool:
        if not token_id or not secret:
            return False
        expected = self._hashes.get(token_id.decode("latin-1"))
        if expected is None:
            return False
        return hmac.compare_digest(expected, hashlib.sha256(secret).hexdigest())

    def routes(self) -> Routes:
        return {
            "proxy_token.create": self.create,
            "proxy_token.list": self.list,
            "proxy_token.delete": self.delete,
        }

    async def create(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        token_id = "wk-" + secrets.token_urlsafe(16)
        secret = "ws-" + secrets.token_urlsafe(24)
        record = ProxyTokenRecord(token_id, _hash(secret), time.time())
        await self._db.run(self._store.put_proxy_token, record)
        self._hashes[token_id] = record.secret_hash
        return {"token_id": token_id, "token_secret": secret}

    async def list(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        records = await self._db.run(self._store.list_proxy_tokens)
        return {"tokens": [{"token_id": r.token_id, "created_at": r.created_at} for r in records]}

    async def delete(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        token_id = Params("proxy_token.delete", raw).text("token_id")
        if not await self._db.run(self._store.delete_proxy_token, token_id):
            raise not_found(f"no proxy token {token_id!r}")
        self._hashes.pop(token_id, None)
        return {}
