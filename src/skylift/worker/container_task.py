"""From a TaskSpec to the ContainerSpec the container runtime starts (paths are container paths).

    layers      the image's directories, then the task's mounts (user source at /root,
                add_local_*(copy=False) files) as the top read-only layer: copy-on-write, so a
                function may write next to its source as on Modal, and nothing it writes survives
    binds       skylift, msgpack, cloudpickle of the worker at /opt/skylift-runtime (read-only);
                the control plane's socket directory at /run/skylift (read-only);
                volumes (whoever mounts them appends `(host dir, container path, read_only)`)
    env         HOME=/root, LANG, PATH; the host's proxy settings; image env; task env (secrets,
                function env); PYTHONPATH=/root:<image's>:/opt/skylift-runtime; PYTHONUNBUFFERED=1;
                SKYLIFT_SERVER_URL=unix:///run/skylift/server.sock, SKYLIFT_TASK_ID/TOKEN, MODAL_IS_REMOTE=1
    cwd         the image's workdir, else /root (Modal's)
    limits      `container_limits.container_limits`: CPU weight and quota, memory limit and
                ephemeral disk from the function's resources, else defaults that protect the host
                (SKYLIFT_EPHEMERAL_DISK_MB tells the runtime the disk's size for its error message)

Nothing of the worker's own environment (its token, its venv, its certificate paths, which mean
nothing inside an image) reaches the container.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .._protocol import api
from .container_images import LayeredImage
from .container_layout import CONTROL_DIR, DEFAULT_PATH, RUNTIME_DIR, SOURCE_ROOT, Bind, runtime_binds
from .container_limits import Host, container_limits
from .runtime import ContainerSpec

ENTRYPOINT = ["-m", "skylift._runtime"]
HOST_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "TZ")


class ContainerTaskError(Exception):
    """The task can't run in a container as asked (e.g. its image has no Python)."""


def control_plane_access(server_url: str) -> tuple[str, list[Bind]]:
    """The URL a container uses for the control plane, and the bind that makes it reachable.

    A unix socket is reached through a read-only bind of its directory when that directory holds
    nothing but sockets (the control plane keeps it so: `<home>/socket/`), which also survives a
    control-plane restart (a new socket in the same directory); otherwise the socket file alone is
    bound. TCP URLs pass through unchanged.
    """
    if not server_url.startswith("unix://"):
        return server_url, []
    real = Path(server_url[len("unix://"):]).resolve()
    directory = real.parent
    try:
        with os.scandir(directory) as entries:
            only_sockets = all(stat.S_ISSOCK(e.stat(follow_symlinks=False).st_mode) for e in entries)
    except OSError:
        only_sockets = False
    if only_sockets:
        return f"unix://{CONTROL_DIR}/{real.name}", [(directory, CONTROL_DIR, True)]
    return f"unix://{CONTROL_DIR}/{real.name}", [(real, f"{CONTROL_DIR}/{real.name}", True)]


def container_spec(task: dict[str, Any], image: LayeredImage, *, mount_root: Path | None, scratch: Path,
                   gpu_indices: list[int] | None = None, host_env: dict[str, str] | None = None,
                   host: Host | None = None) -> ContainerSpec:
    if not image.python_path:
        raise ContainerTaskError(f"image {image.image_id} has no Python (no python3 or python on its PATH), so "
                                 "skylift can't run functions in it; use Image.debian_slim() or an image with Python")
    if gpu_indices:
        raise ContainerTaskError("the container runtime can't pass GPUs through yet; run GPU workers with "
                                 "SKYLIFT_RUNTIME=process")
    host_vars = dict(os.environ if host_env is None else host_env)
    env = {"HOME": "/root", "LANG": "C.UTF-8", "PATH": DEFAULT_PATH}
    env.update({k: host_vars[k] for k in HOST_VARS if k in host_vars})
    env.update(image.env)
    env.update({str(k): str(v) for k, v in (task.get("env") or {}).items()})
    env["PYTHONPATH"] = ":".join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH"), RUNTIME_DIR) if p)
    env["PYTHONUNBUFFERED"] = "1"
    server_url, binds = control_plane_access(task["server_url"])
    env[api.ENV_SERVER_URL] = server_url
    env[api.ENV_TASK_ID] = task["task_id"]
    env[api.ENV_TASK_TOKEN] = task["token"]
    env[api.ENV_IS_REMOTE] = "1"
    definition = task.get("definition") or {}
    resources = dict(task.get("resources") or {})
    limits = container_limits(dict(definition.get("resources") or {}), resources, host or Host.this())
    resources.update(cpu_request=limits.cpu_request, cpu_limit=limits.cpu_limit,
                     memory_limit=limits.memory_limit_mb, ephemeral_disk_mb=limits.ephemeral_disk_mb)
    env[api.ENV_EPHEMERAL_DISK_MB] = str(limits.ephemeral_disk_mb)
    return ContainerSpec(
        task_id=task["task_id"], argv=[image.python_path, *ENTRYPOINT], env=env,
        cwd=Path(image.workdir or SOURCE_ROOT), image_root=image.root, resources=resources, mount_root=mount_root,
        scratch=scratch, layers=[*image.layers, *([mount_root] if mount_root is not None else [])],
        binds=[*runtime_binds(), *binds], block_network=bool(definition.get("block_network")))
