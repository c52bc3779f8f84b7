"""Which runtime a worker uses, and the image store and ContainerSpec maker that go with it.

    SKYLIFT_RUNTIME=container   overlayfs + bubblewrap + cgroups (Linux, root); an error where it can't run
    SKYLIFT_RUNTIME=process     a subprocess in a venv (no isolation; laptops, macOS)
    unset or "auto"             container when `container.available()` says yes and the machine has no
                                GPUs (the container runtime doesn't pass GPUs through yet); else process

`choose()` is the pure decision; `make_runtime()` does the probing and builds the runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .blobs import BlobCache
from .images import BuiltImage, ImageStore
from .process_runtime import ProcessRuntime
from .runtime import ContainerRuntime, ContainerSpec
from .task_spec import container_spec as process_container_spec

ENV = "SKYLIFT_RUNTIME"
NAMES = ("process", "container")
log = logging.getLogger("skylift.worker")


class RuntimeUnavailable(Exception):
    """The runtime asked for can't run on this host; the message says why and what to do."""


@dataclass(frozen=True)
class Choice:
    name: str
    reason: str


def choose(requested: str | None, container_available: tuple[bool, str], has_gpus: bool) -> Choice:
    """The runtime to use.

    Example:
        >>> choose(None, (True, "bubblewrap 0.8.0"), has_gpus=False).name
        'container'
        >>> choose("auto", (False, "containers need root"), has_gpus=False)
        Choice(name='process', reason='the container runtime is unavailable: containers need root')
    """
    wanted = (requested or "auto").strip().lower()
    ok, why = container_available
    if wanted == "process":
        return Choice("process", f"{ENV}=process")
    if wanted == "container":
        if not ok:
            raise RuntimeUnavailable(f"{ENV}=container, but this host can't run containers: {why}. Fix that, or "
                                     f"use {ENV}=process (no isolation)")
        return Choice("container", f"{ENV}=container ({why})")
    if wanted != "auto":
        raise RuntimeUnavailable(f"{ENV}={requested!r} is not a runtime; use one of {', '.join(NAMES)} or auto")
    if not ok:
        return Choice("process", f"the container runtime is unavailable: {why}")
    if has_gpus:
        return Choice("process", "this machine has GPUs, which the container runtime can't pass through yet")
    return Choice("container", why)


def make_runtime(environ: Mapping[str, str], home: Path, *, has_gpus: bool) -> ContainerRuntime:
    """The runtime `choose()` picks for this host; RuntimeUnavailable when the one asked for can't run."""
    requested = environ.get(ENV)
    if (requested or "").strip().lower() == "process":
        available: tuple[bool, str] = (False, "not probed")
    else:
        from .container import available as container_available

        available = container_available()
    choice = choose(requested, available, has_gpus)
    log.info("runtime: %s (%s)", choice.name, choice.reason)
    if choice.name == "container":
        from .container.reap import worker_group
        from .container_runtime import SandboxRuntime

        return SandboxRuntime(state_root=home / "tasks", cgroup_group=worker_group(home))
    return ProcessRuntime()


def image_store(runtime: ContainerRuntime, home: Path, blobs: BlobCache, runtime_site: Path) -> ImageStore:
    """Where `runtime`'s images are built: venvs (`images/`) or overlayfs layers (`container-images/`)."""
    if runtime.name == "container":
        from .container_images import ContainerImageStore

        return ContainerImageStore(home / "container-images", blobs, runtime_site=runtime_site)
    return ImageStore(home / "images", blobs, runtime_site=runtime_site)


def container_spec(runtime: ContainerRuntime, task: dict[str, Any], image: BuiltImage, *, source_dir: Path | None,
                   mount_root: Path | None, scratch: Path, gpu_indices: list[int] | None,
                   host_has_gpus: bool) -> ContainerSpec:
    """The ContainerSpec of `task` for `runtime` (host paths for the process runtime, container paths else)."""
    if runtime.name == "container":
        from .container_images import LayeredImage
        from .container_task import container_spec as sandbox_container_spec

        if not isinstance(image, LayeredImage):
            raise TypeError(f"image {image.image_id} was not built for the container runtime")
        return sandbox_container_spec(task, image, mount_root=mount_root, scratch=scratch, gpu_indices=gpu_indices)
    return process_container_spec(task, image, source_dir=source_dir, mount_root=mount_root, scratch=scratch,
                                  gpu_indices=gpu_indices, host_has_gpus=host_has_gpus)
