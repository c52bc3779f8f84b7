"""From a TaskSpec (see `skylift._protocol.api`) to the ContainerSpec the runtime starts.

The container's environment is built from scratch, not inherited from the worker, so nothing of
the worker's (its token, its own virtualenv) leaks in:

    PATH, HOME, LANG, certificates/proxies   from the host (what user code needs to reach the net)
    image env (Image.env)                    then the task's env (secrets, function env) on top
    VIRTUAL_ENV, PYTHONUNBUFFERED=1, PYTHONPATH (the task's /root source dir first)
    SKYLIFT_SERVER_URL, SKYLIFT_TASK_ID, SKYLIFT_TASK_TOKEN, MODAL_IS_REMOTE=1
    CUDA_VISIBLE_DEVICES                     the GPUs allocated to this task ("" for none)

The working directory is the image's workdir when it sets one, else the task's source
directory (Modal's /root), else a scratch directory of the task.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._protocol import api
from .images import BuiltImage
from .runtime import ContainerSpec, SnapshotSource

ENTRYPOINT = ["-m", "skylift._runtime"]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_VARS = ("HOME", "USER", "LANG", "LC_ALL", "TZ", "TERM", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
             "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
             "PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")


def task_mounts(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's mounts and its definition's, each once."""
    seen: set[str] = set()
    mounts = []
    for mount in [*(task.get("mounts") or []), *((task.get("definition") or {}).get("mounts") or [])]:
        key = repr((mount.get("remote_path"), sorted((f["path"], f["sha256"]) for f in mount.get("files") or [])))
        if key not in seen:
            seen.add(key)
            mounts.append(mount)
    return mounts


def snapshot_source(task: dict[str, Any], image: BuiltImage) -> SnapshotSource | None:
    """What a memory-snapshot template of this task needs; None unless its function enables snapshots."""
    definition = task.get("definition") or {}
    if not definition.get("enable_memory_snapshot"):
        return None
    return SnapshotSource(function_id=str(task.get("function_id") or ""), image_id=str(image.image_id),
                          definition=definition, params=task.get("params"))


def container_spec(task: dict[str, Any], image: BuiltImage, *, source_dir: Path | None, mount_root: Path | None,
                   scratch: Path, gpu_indices: list[int] | None, host_has_gpus: bool,
                   host_env: dict[str, str] | None = None) -> ContainerSpec:
    host = dict(os.environ if host_env is None else host_env)
    env = {k: host[k] for k in HOST_VARS if k in host}
    env.setdefault("HOME", str(scratch))
    env.setdefault("LANG", "C.UTF-8")
    env["PATH"] = SYSTEM_PATH
    env.update(image.env)
    env.update({str(k): str(v) for k, v in (task.get("env") or {}).items()})
    env["PATH"] = f"{image.root / 'bin'}{os.pathsep}{env.get('PATH') or SYSTEM_PATH}"
    env["VIRTUAL_ENV"] = str(image.root)
    env["PYTHONUNBUFFERED"] = "1"
    python_path = [str(source_dir)] if source_dir is not None else []
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(python_path)
    env[api.ENV_SERVER_URL] = task["server_url"]
    env[api.ENV_TASK_ID] = task["task_id"]
    env[api.ENV_TASK_TOKEN] = task["token"]
    env[api.ENV_IS_REMOTE] = "1"
    if gpu_indices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_indices)
    elif host_has_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    if image.workdir:
        cwd = image.host_path(image.workdir)
    elif source_dir is not None:
        cwd = source_dir
    else:
        cwd = scratch
    return ContainerSpec(task_id=task["task_id"], argv=[str(image.python), *ENTRYPOINT], env=env, cwd=cwd,
                         image_root=image.root, resources=dict(task.get("resources") or {}),
                         mount_root=mount_root, scratch=scratch, snapshot=snapshot_source(task, image))
