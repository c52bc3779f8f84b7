"""Images: registered by the client, built by a worker, tracked here.

The control plane names an image by hashing its layer chain (`im-…`), so the same definition
from any client is one image, built once. Building is the worker's job (`build_image`); the
control plane picks a worker, relays progress (`worker.image_progress`) to `image.status`
long-polls, and holds back containers of functions whose image isn't ready yet (`scaler.py`).
An image id the control plane never registered (built some other way) is taken as ready.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..._hashing import layer_chain_ids, sha256_bytes
from ..._protocol.rpc_server import Session
from ..auth import Routes
from ..longpoll import Deadline, Signal
from ..params import Params, invalid, not_found
from ..store import ImageRecord

if TYPE_CHECKING:
    from ..control_plane import ControlPlane

READY = "ready"
BUILDING = "building"
FAILED = "failed"


def image_id(definition: dict[str, Any]) -> str:
    """`im-` + the id of its last layer (`skylift._hashing`, shared with the SDK and the worker)."""
    chain = layer_chain_ids(definition)
    return "im-" + (chain[-1] if chain else sha256_bytes(b""))


@dataclass(eq=False)
class ImageEntry:
    image_id: str
    definition: dict[str, Any]
    status: str
    error: str | None = None
    built_at: float | None = None
    logs: list[str] = field(default_factory=list)
    signal: Signal = field(default_factory=Signal)
    builder: str | None = None  # worker building it
    force: bool = False


class Images:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._images: dict[str, ImageEntry] = {}

    def routes(self) -> Routes:
        return {"image.build": self.build, "image.status": self.status,
                "worker.image_progress": self.progress}

    def preload(self, image_ids: set[str]) -> None:
        """Read the images running functions use (at startup), so their containers can be built anywhere."""
        for iid in image_ids:
            rec = self.cp.db.store.get_image(iid)
            if rec is not None and iid not in self._images:
                # A build cut short by the restart has no builder now: it is sent again when needed.
                self._images[iid] = ImageEntry(rec.image_id, rec.definition, rec.status, rec.error, rec.built_at)

    def definition(self, image_id: str) -> dict[str, Any] | None:
        entry = self._images.get(image_id)
        return entry.definition if entry is not None else None

    async def _get(self, image_id: str) -> ImageEntry | None:
        entry = self._images.get(image_id)
        if entry is None:
            rec = await self.cp.db.run(self.cp.db.store.get_image, image_id)
            if rec is not None:
                entry = self._images.setdefault(image_id, ImageEntry(rec.image_id, rec.definition, rec.status,
                                                                     rec.error, rec.built_at))
        return entry

    def builder(self, image_id: str) -> str | None:
        """The worker building this image now, if any (server/access.py)."""
        entry = self._images.get(image_id)
        return entry.builder if entry is not None else None

    def readiness(self, image_id: str) -> tuple[str, str | None]:
        """(status, error) for the scaler; unknown ids count as ready."""
        entry = self._images.get(image_id)
        if entry is None:
            return READY, None
        if entry.status == BUILDING and entry.builder is None:
            self._dispatch(entry)
        return entry.status, entry.error

    async def build(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("image.build", raw)
        definition = p.mapping("image")
        force = p.flag("force_build")
        layers = definition.get("layers")
        if not isinstance(layers, list) or not all(
                isinstance(x, dict) and isinstance(x.get("step"), str) and isinstance(x.get("args") or {}, dict)
                and all(isinstance(f, dict) and {"path", "sha256", "mode"} <= f.keys() for f in x.get("files") or [])
                for x in layers):
            raise invalid("image.build", "field 'image' must be an ImageDefinition: "
                                         "{layers: [{step, args, files: [{path, sha256, mode}]}]}")
        force = force or any(layer.get("force_build") for layer in layers)
        iid = image_id(definition)
        entry = await self._get(iid)
        if entry is None:
            entry = self._images.setdefault(iid, ImageEntry(iid, definition, BUILDING))
        elif entry.status == BUILDING:
            return {"image_id": iid, "status": entry.status}
        elif entry.status == READY and not force:
            return {"image_id": iid, "status": READY}
        # New, failed before (try again), or forced.
        entry.definition, entry.status, entry.error, entry.logs = definition, BUILDING, None, []
        entry.builder, entry.force = None, force
        await self._save(entry)
        self._dispatch(entry)
        return {"image_id": iid, "status": entry.status}

    def _dispatch(self, entry: ImageEntry) -> None:
        workers = self.cp.workers.connected()
        if not workers:
            return  # sent when a worker registers
        worker = min(workers, key=lambda w: (w.n_tasks, w.worker_id))
        image = entry.definition
        if entry.force:
            image = {**image, "layers": [{**layer, "force_build": True} for layer in image.get("layers") or []]}
        entry.builder = worker.worker_id
        command: dict[str, Any] = {"op": "build_image", "image_id": entry.image_id, "image": image}
        secrets = self._build_secrets(image)
        if secrets:
            command["secrets"] = secrets
        worker.send(command)

    def _build_secrets(self, image: dict[str, Any]) -> dict[str, dict[str, str]]:
        """The values of the secrets build steps name (`secrets=`, a registry's `secret`), for the builder only."""
        wanted: list[str] = []
        for layer in image.get("layers") or []:
            args = layer.get("args") or {}
            wanted += [s for s in args.get("secret_ids") or [] if isinstance(s, str)]
            if isinstance(args.get("registry_secret_id"), str):
                wanted.append(args["registry_secret_id"])
        found: dict[str, dict[str, str]] = {}
        for secret_id in dict.fromkeys(wanted):
            values, missing = self.cp.storage.secrets.env_for([secret_id])
            if not missing:
                found[secret_id] = values
        return found

    def on_worker_change(self) -> None:
        """A worker came or went: (re)send builds that have nobody working on them."""
        connected = {w.worker_id for w in self.cp.workers.connected()}
        for entry in self._images.values():
            if entry.status == BUILDING and entry.builder not in connected:
                entry.builder = None
                self._dispatch(entry)

    async def _save(self, entry: ImageEntry) -> None:
        await self.cp.db.run(self.cp.db.store.put_image,
                             ImageRecord(entry.image_id, entry.definition, entry.status, entry.error, entry.built_at))

    async def status(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("image.status", raw)
        iid = p.text("image_id")
        offset = p.integer("log_offset", 0, minimum=0)
        deadline = Deadline(p.timeout())
        entry = await self._get(iid)
        if entry is None:
            raise not_found(f"no image {iid!r}; register it with image.build")
        while entry.status == BUILDING and len(entry.logs) <= offset and deadline.remaining() > 0:
            await entry.signal.wait(deadline.remaining())
        answer: dict[str, Any] = {"status": entry.status, "logs": entry.logs[offset:],
                                  "next_offset": max(offset, len(entry.logs))}
        if entry.error:
            answer["error"] = entry.error
        return answer

    async def progress(self, session: Session, raw: dict[str, Any]) -> dict[str, Any]:
        p = Params("worker.image_progress", raw)
        iid = p.text("image_id")
        lines = p.strings("logs") if raw.get("logs") is not None else []
        status = p.opt_text("status")
        if status not in (None, READY, FAILED):
            raise invalid("worker.image_progress", f"field 'status' must be 'ready' or 'failed', got {status!r}")
        entry = await self._get(iid)
        if entry is None:
            raise not_found(f"no image {iid!r} is being built")
        entry.logs.extend(lines)
        if status is not None and entry.status == BUILDING:
            entry.status = status
            entry.error = p.opt_text("error") or (None if status == READY else "the build failed")
            entry.built_at = time.time() if status == READY else None
            entry.builder = None
            await self._save(entry)
            self.cp.scaler.wake()
        entry.signal.notify()
        return {}
