"""Images for the process runtime: a chain of layers, each a self-contained Python environment.

On disk, under `<home>/images/`:

    <layer id>/                 one built layer (the id is `skylift._hashing.layer_chain_ids`)
        bin/ lib/ pyvenv.cfg    a virtual environment: the parent's, plus this step's changes
        fs/<container path>     files the image adds (add_local_*, workdir), at their container path
        skylift-layer.json      {layer_id, parent, step, env, workdir, python_version, build_seconds, ...}
    refs/<image id>.json        {image_id, layer_ids, definition}: which layers make an image
    .tmp-<layer id>-*/          a layer being built; renamed to <layer id>/ only when its step succeeds

A layer starts as a copy of its parent (`cp -a`, reflinked where the filesystem can), with the
parent's absolute paths in `bin/` scripts, `pyvenv.cfg` and `.pth` files rewritten so the copy
stands alone; after its step runs the same rewrite moves it from its temporary name to its final
one. A layer that exists is never rebuilt (unless `force_build`), so rebuilding an unchanged
image only hashes its definition and checks that the directories exist.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._hashing import BUILDER_VERSION, layer_chain_ids
from . import image_steps
from .blobs import BlobCache
from .image_steps import BASE_STEPS, StepContext, StepError
from .mounts import host_path

LAYER_META = "skylift-layer.json"
Log = Callable[[str], None]


class BuildError(Exception):
    """An image build failed; the message names the step, the command, its exit code and output."""


@dataclass
class BuiltImage:
    """A built image, as a container needs it."""

    image_id: str
    layer_id: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    python_version: str = ""

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def host_path(self, container_path: str) -> Path:
        return host_path(self.root / "fs", container_path)


def relocate(directory: Path, old: str, new: str) -> None:
    """Rewrite absolute references to `old` inside a copied environment so they point at `new`."""
    if old == new:
        return
    old_b, new_b = old.encode(), new.encode()
    candidates: list[Path] = []
    bin_dir = directory / "bin"
    if bin_dir.is_dir():
        for entry in bin_dir.iterdir():
            if entry.is_symlink():
                target = os.readlink(entry)
                if target.startswith(old):
                    entry.unlink()
                    entry.symlink_to(new + target[len(old):])
            elif entry.is_file():
                candidates.append(entry)
    candidates.append(directory / "pyvenv.cfg")
    candidates += list(directory.glob("lib/python*/site-packages/*.pth"))
    for path in candidates:
        try:
            if path.stat().st_size > 16 << 20:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if old_b not in data or b"\0" in data[:8192]:
            continue  # binaries (such as a uv executable) are left alone
        mode = path.stat().st_mode
        tmp = path.with_name(f".{path.name}.relocate")
        tmp.write_bytes(data.replace(old_b, new_b))
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, path)  # a new inode: never edit a file another layer might share


async def copy_tree(source: Path, dest: Path) -> None:
    """`cp -a source/. dest` (reflinked where possible); shutil where there is no GNU cp."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "cp", "-a", "--reflink=auto", f"{source}/.", str(dest),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        if await proc.wait() == 0:
            return
    except OSError:
        pass
    await asyncio.to_thread(shutil.copytree, source, dest, symlinks=True, dirs_exist_ok=True)


def with_implicit_base(layers: list[dict[str, Any]], python_version: str) -> list[dict[str, Any]]:
    """An image with no base starts from the worker's own Python, like `debian_slim()`."""
    if layers and layers[0]["step"] in BASE_STEPS:
        return layers
    base = {"step": "debian_slim", "args": {"python_version": python_version}, "files": [], "force_build": False}
    return [base, *layers]


def describe(layer: dict[str, Any]) -> str:
    args = layer.get("args") or {}
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if v not in (None, "", [], {}, False))
    files = layer.get("files") or []
    more = f" ({len(files)} file{'s' if len(files) != 1 else ''})" if files else ""
    return f"{layer['step']}({shown}){more}"


class ImageStore:
    """Builds images layer by layer and finds built ones."""

    def __init__(self, root: Path, blobs: BlobCache, *, runtime_site: Path,
                 pythons: dict[str, str] | None = None, host_python: str = sys.executable) -> None:
        self.root = root
        self.blobs = blobs
        self.runtime_site = runtime_site
        self.host_python = host_python
        self.pythons = pythons if pythons is not None else image_steps.find_pythons()
        self.default_python = "{}.{}".format(*sys.version_info[:2])
        self._locks: dict[str, asyncio.Lock] = {}
        (root / "refs").mkdir(parents=True, exist_ok=True)

    # -- finding built images ---------------------------------------------------------------

    def _ref_path(self, image_id: str) -> Path:
        return self.root / "refs" / f"{image_id.replace('/', '_')}.json"

    def definition(self, image_id: str) -> dict[str, Any] | None:
        """The ImageDefinition this worker was last given for `image_id`."""
        try:
            ref = json.loads(self._ref_path(image_id).read_text())
        except (OSError, ValueError):
            return None
        definition: dict[str, Any] = ref["definition"]
        return definition

    def lookup(self, image_id: str) -> BuiltImage | None:
        try:
            ref = json.loads(self._ref_path(image_id).read_text())
        except (OSError, ValueError):
            return None
        layer_dir = self.root / ref["layer_ids"][-1]
        if not all((self.root / lid).is_dir() for lid in ref["layer_ids"]):
            return None
        return self._built(image_id, layer_dir)

    def _built(self, image_id: str, layer_dir: Path) -> BuiltImage:
        meta = json.loads((layer_dir / LAYER_META).read_text())
        return BuiltImage(image_id, layer_dir.name, layer_dir, dict(meta.get("env") or {}), meta.get("workdir"),
                          meta.get("python_version") or "")

    def _remember(self, image_id: str, layer_ids: list[str], definition: dict[str, Any]) -> None:
        path = self._ref_path(image_id)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"image_id": image_id, "layer_ids": layer_ids, "definition": definition},
                                  default=repr))
        os.replace(tmp, path)

    # -- building -------------------------------------------------------------------------

    async def build(self, image_id: str, definition: dict[str, Any], log: Log, *, force: bool = False,
                    secrets: dict[str, dict[str, str]] | None = None) -> BuiltImage:
        """Build what is missing of the image and return it; raises BuildError.

        `secrets` ({secret id: {KEY: value}}, from the build_image command) are for the steps that name
        them; the process runtime's steps don't use them yet (they say so in the build log).
        """
        layers = with_implicit_base(list(definition.get("layers") or []), self.default_python)
        layer_ids = layer_chain_ids({"layers": layers})
        forced = force
        for index, (layer, layer_id) in enumerate(zip(layers, layer_ids, strict=True)):
            forced = forced or bool(layer.get("force_build"))
            label = f"=> [{index + 1}/{len(layers)}] {describe(layer)}"
            final = self.root / layer_id
            if final.is_dir() and not forced:
                log(f"{label} (cached)")
                continue
            parent = self.root / layer_ids[index - 1] if index else None
            async with self._locks.setdefault(layer_id, asyncio.Lock()):
                if final.is_dir() and not forced:
                    log(f"{label} (cached)")
                    continue
                log(label)
                await self._build_layer(layer, layer_id, parent, index, log)
        self._remember(image_id, layer_ids, definition)
        built = self._built(image_id, self.root / layer_ids[-1])
        log(f"=> image {image_id} ready")
        return built

    async def _build_layer(self, layer: dict[str, Any], layer_id: str, parent: Path | None, index: int,
                           log: Log) -> None:
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{layer_id}-"))
        final = self.root / layer_id
        try:
            if parent is not None:
                await copy_tree(parent, tmp)
                relocate(tmp, str(parent), str(tmp))
                meta = json.loads((tmp / LAYER_META).read_text())
            else:
                meta = {"env": {}, "workdir": None, "python_version": ""}
            meta.update(layer_id=layer_id, parent=parent.name if parent else None, step=layer["step"],
                        builder=BUILDER_VERSION)
            ctx = StepContext(layer=layer, dir=tmp, meta=meta, blobs=self.blobs, log=log, pythons=self.pythons,
                              runtime_site=self.runtime_site, host_python=self.host_python, first=parent is None)
            try:
                await image_steps.run_step(ctx)
            except StepError as exc:
                raise BuildError(f"step {index + 1} ({describe(layer)}) failed: {exc}") from None
            relocate(tmp, str(tmp), str(final))
            meta["build_seconds"] = round(time.monotonic() - started, 3)
            meta["built_at"] = time.time()
            (tmp / LAYER_META).write_text(json.dumps(meta, indent=1, default=repr))
            tmp.chmod(0o755)
            self._install(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _install(self, tmp: Path, final: Path) -> None:
        trash = None
        if final.exists():  # a forced rebuild replaces the old layer
            trash = final.with_name(f".trash-{final.name}-{os.getpid()}-{time.monotonic_ns()}")
            final.rename(trash)
        tmp.rename(final)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


# Packages every image gets from the worker's own installation (see `prepare_runtime_site`).
RUNTIME_PACKAGES = ("skylift", "msgpack", "cloudpickle")


def prepare_runtime_site(directory: Path) -> Path:
    """A directory of links to the worker's skylift, msgpack and cloudpickle, for images' `.pth`.

    Links, so a container always runs the worker's current skylift: the runtime and the control
    plane speak the same protocol version. Refreshed at every worker start.
    """
    import importlib

    directory.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PACKAGES:
        module = importlib.import_module(name)
        source = Path(next(iter(module.__path__))).resolve()
        link = directory / name
        if link.is_symlink() and Path(os.readlink(link)) == source:
            continue
        tmp = directory / f".{name}.{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(source)
        os.replace(tmp, link)
    return directory
