"""The `blob.*` methods: content-addressed uploads (source files, local files of images)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..params import Params, invalid, not_found
from .blobs import BlobHashMismatch, BlobStore, is_sha256

MAX_HASHES = 100_000


class BlobApi:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def routes(self) -> Routes:
        return {"blob.missing": self.missing, "blob.put": self.put,
                "blob.get": self.get}

    @staticmethod
    def _hash(method: str, value: str) -> str:
        if not is_sha256(value):
            raise invalid(method, f"{value!r} is not a sha256 hex digest (64 lowercase hex characters)")
        return value

    async def missing(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        hashes = [self._hash("blob.missing", h) for h in Params("blob.missing", raw).strings("hashes")]
        if len(hashes) > MAX_HASHES:
            raise invalid("blob.missing", f"at most {MAX_HASHES} hashes per request")
        present = await asyncio.to_thread(lambda: {h for h in hashes if self.blobs.has(h)})
        return {"missing": [h for h in dict.fromkeys(hashes) if h not in present]}

    async def put(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("blob.put", raw)
        sha256 = self._hash("blob.put", p.text("sha256"))
        data = p.blob("data")
        try:
            await asyncio.to_thread(self.blobs.put, sha256, data)
        except BlobHashMismatch as exc:
            raise invalid("blob.put", str(exc)) from None
        return {}

    async def get(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        sha256 = self._hash("blob.get", Params("blob.get", raw).text("sha256"))
        data = await asyncio.to_thread(self.blobs.get, sha256)
        if data is None:
            raise not_found(f"no blob {sha256}; upload it with blob.put")
        return {"data": data}
