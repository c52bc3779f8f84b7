"""Images for the container runtime: a chain of overlayfs layers, each built inside the image.

On disk, under `<home>/container-images/` (beside the process runtime's `images/`, so a worker
home can serve either runtime):

    <layer id>/                 one built layer (the id is `skylift._hashing.layer_chain_ids`)
        fs/                     what its step changed: an overlayfs upper directory (whiteouts included)
        skylift-layer.json      {layer_id, parent, step, env, workdir, python, python_version,
                                 python_is_venv, lowers: [every directory of the image, lowest first]}
    refs/<image id>.json        {image_id, layer_ids, definition}
    oci/<digest>/               a layer pulled from a registry, in overlayfs form (shared by images)
    .cache/uv                   uv's cache, lent to install steps
    .tmp-<layer id>-*/          a layer being built; renamed to <layer id>/ only when its step succeeds

`debian_slim()`'s own layer is empty: its `lowers` are the Debian root filesystem and the
/opt/skylift-venv layer, both cached once per host under the base cache (`/var/cache/skylift`,
or `$SKYLIFT_IMAGE_CACHE`) because debootstrap takes the better part of a minute. A layer that
changed nothing (env, an install of what is there) adds no directory to `lowers`, so only layers
with content count against overlayfs's limit on the number of lower directories.

A step runs on overlay(parent's lowers) with the new `fs/` as upper; a failed step leaves nothing
(its temporary directory is deleted), a built layer is never rebuilt unless `force_build`.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._hashing import BUILDER_VERSION
from . import container_steps
from .blobs import BlobCache
from .image_steps import StepError
from .images import LAYER_META, BuildError, BuiltImage, ImageStore, Log, describe

BASE_CACHE_ENV = "SKYLIFT_IMAGE_CACHE"
DEFAULT_BASE_CACHE = Path("/var/cache/skylift")
REPROBE_AFTER = frozenset({"apt_install", "run_commands", "run_function", "pip_install", "uv_pip_install"})


# The secret values of the build in progress (an asyncio task's own, so concurrent builds don't mix).
_build_secrets: contextvars.ContextVar[dict[str, dict[str, str]] | None] = contextvars.ContextVar(
    "build_secrets", default=None)


def base_cache_dir() -> Path:
    """Where the Debian base (and its venv layer) is cached for every worker home on this host."""
    return Path(os.environ.get(BASE_CACHE_ENV) or DEFAULT_BASE_CACHE)


def _summary(line: str) -> None:
    if not line.startswith("debootstrap: "):
        print(line, flush=True)


def warm_base_cache(log: Log = _summary) -> Path | None:
    """Build the Debian base and its venv layer now (scripts/setup does, so no test pays debootstrap)."""
    from .container import available, build_debian_base

    ok, why = available()
    if not ok:
        log(f"not preparing the container base image: {why}")
        return None
    base = build_debian_base(base_cache_dir(), None, log)
    container_steps.ensure_venv_layer(base, log)
    return base


@dataclass
class LayeredImage(BuiltImage):
    """A built image of the container runtime: directories to stack, and the image's Python."""

    layers: list[Path] = field(default_factory=list)
    python_path: str | None = None
    python_is_venv: bool = False


def _threadsafe(log: Log) -> Log:
    """`log` callable from the build threads (the agent's log sinks belong to the event loop)."""
    loop = asyncio.get_running_loop()

    def emit(line: str) -> None:
        loop.call_soon_threadsafe(log, line)

    return emit


class ContainerImageStore(ImageStore):
    """Builds images as overlayfs layers, each step run in a sandbox on the layers below it."""

    def __init__(self, root: Path, blobs: BlobCache, *, runtime_site: Path, base_cache: Path | None = None,
                 services: dict[str, Any] | None = None) -> None:
        super().__init__(root, blobs, runtime_site=runtime_site, pythons={}, host_python=sys.executable)
        self.base_cache = base_cache or base_cache_dir()
        self.cache_dir = root / ".cache"
        self.services = services or {}
        # An image without a base gets debian_slim() of this Python (the worker's own series).
        self.default_python = "{}.{}".format(*sys.version_info[:2])

    async def build(self, image_id: str, definition: dict[str, Any], log: Log, *, force: bool = False,
                    secrets: dict[str, dict[str, str]] | None = None) -> BuiltImage:
        token = _build_secrets.set(dict(secrets or {}))
        try:
            return await super().build(image_id, definition, log, force=force)
        finally:
            _build_secrets.reset(token)

    def lookup(self, image_id: str) -> LayeredImage | None:
        built = super().lookup(image_id)
        if not isinstance(built, LayeredImage) or not all(p.is_dir() for p in built.layers):
            return None  # e.g. the base cache was cleared: build again
        return built

    def _built(self, image_id: str, layer_dir: Path) -> LayeredImage:
        meta = json.loads((layer_dir / LAYER_META).read_text())
        return LayeredImage(image_id, layer_dir.name, layer_dir, dict(meta.get("env") or {}), meta.get("workdir"),
                            meta.get("python_version") or "", layers=[Path(p) for p in meta.get("lowers") or []],
                            python_path=meta.get("python"), python_is_venv=bool(meta.get("python_is_venv")))

    async def _build_layer(self, layer: dict[str, Any], layer_id: str, parent: Path | None, index: int,
                           log: Log) -> None:
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{layer_id}-"))
        final = self.root / layer_id
        try:
            if parent is not None:
                meta = json.loads((parent / LAYER_META).read_text())
            else:
                meta = {"env": {}, "workdir": None, "python": None, "python_version": "", "lowers": []}
            lowers = [Path(p) for p in meta.get("lowers") or []]
            meta.update(layer_id=layer_id, parent=parent.name if parent else None, step=layer["step"],
                        builder=BUILDER_VERSION)
            fs = tmp / "fs"
            fs.mkdir()
            scratch = tmp / "scratch"
            scratch.mkdir()
            ctx = container_steps.LayerBuild(
                layer=layer, fs=fs, lowers=lowers, meta=meta, blobs=self.blobs, log=_threadsafe(log),
                scratch=scratch, cache_dir=self.cache_dir, base_cache=self.base_cache, first=parent is None,
                store_root=self.root, services={**self.services, "secrets": _build_secrets.get() or {}})
            try:
                await container_steps.run_step(ctx)
                if not meta.get("python") and layer["step"] in REPROBE_AFTER:
                    await ctx.probe_python()  # e.g. apt_install("python3") on an image that had none
            except StepError as exc:
                raise BuildError(f"step {index + 1} ({describe(layer)}) failed: {exc}") from None
            shutil.rmtree(scratch)
            own = [final / "fs"] if any(fs.iterdir()) else []
            meta["lowers"] = [str(p) for p in [*ctx.lowers, *own]]
            meta["build_seconds"] = round(time.monotonic() - started, 3)
            meta["built_at"] = time.time()
            (tmp / LAYER_META).write_text(json.dumps(meta, indent=1, default=repr))
            tmp.chmod(0o755)
            fs.chmod(0o755)
            self._install(tmp, final)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
            raise
