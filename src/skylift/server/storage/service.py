"""The control plane's storage objects in one place: Secrets, Volumes, Dicts, Queues.

`Storage` owns the object store (`sqlite_objects`, in `state.db`), the secret key, and the RPC
groups `object.*`, `secret.*`, `dict.*`, `queue.*` and `volume.*`. It also answers the one
question the scheduler asks of it: what a container of a function gets attached (`attachments`),
which is where secret values are decrypted, straight into the TaskSpec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..store import Database
from .blobs import BlobStore
from .dict_api import DictApi
from .object_store import ObjectStore
from .objects import Objects
from .queue_api import QueueApi
from .secret_api import SecretApi
from .secret_box import SecretBox, load_or_create_key
from .sqlite_objects import SqliteObjects
from .volume_api import VolumeApi


@dataclass
class Attachments:
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    bucket_mounts: list[dict[str, Any]] = field(default_factory=list)
    missing_secrets: list[str] = field(default_factory=list)


class Storage:
    def __init__(self, home: Path, db: Database, blobs: BlobStore, store: ObjectStore | None = None) -> None:
        self.store: ObjectStore = store if store is not None else SqliteObjects(home / "state.db")
        self.objects = Objects(db, self.store)
        self.secrets = SecretApi(self.objects, SecretBox(load_or_create_key(home)))
        self.dicts = DictApi(self.objects)
        self.queues = QueueApi(self.objects)
        self.volumes = VolumeApi(self.objects, blobs)

    def start(self) -> None:
        self.objects.startup()
        self.secrets.load()

    def close(self) -> None:
        self.store.close()

    def routes(self) -> Routes:
        routes: Routes = {}
        for part in (self.objects, self.secrets, self.dicts, self.queues, self.volumes):
            routes.update(part.routes())
        return routes

    async def on_disconnect(self, session: Session) -> None:
        await self.objects.on_disconnect(session)

    def attachments(self, definition: dict[str, Any]) -> Attachments:
        """Secret variables (decrypted here), volumes and bucket mounts for a container's TaskSpec."""
        secret_ids = [s for s in definition.get("secret_ids") or [] if isinstance(s, str)]
        env, missing = self.secrets.env_for(secret_ids)
        out = Attachments(env=env, missing_secrets=missing)
        read_only = set(definition.get("volume_read_only") or [])
        for path, volume_id in sorted((definition.get("volume_ids") or {}).items()):
            mount = {"mount_path": path, "volume_id": volume_id}
            out.volumes.append({**mount, "read_only": True} if path in read_only else mount)
        for mount in definition.get("cloud_bucket_mounts") or []:
            spec = {k: v for k, v in mount.items() if k != "secret_id"}
            secret_id = mount.get("secret_id")
            if secret_id:
                credentials, gone = self.secrets.env_for([secret_id])
                out.missing_secrets += gone
                spec["credentials"] = credentials
            out.bucket_mounts.append(spec)
        return out
