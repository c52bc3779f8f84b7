"""What a function gets attached: `secrets=[...]` and `volumes={...}` (Volumes and CloudBucketMounts).

Checked when the decorator runs (`check`), resolved to ids when the app is created (`resolve`,
which is when a missing secret or volume is reported, naming the fix). The definition then
carries `secret_ids` (App-level secrets first, later ones override earlier ones), `volume_ids`
({mount path: id}) and `cloud_bucket_mounts`.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from .exception import InvalidError

if TYPE_CHECKING:
    from .app import App
    from .functions import Function

# Mounting over these would break the container (or, in the process runtime, nothing would see it).
RESERVED = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/var",
            "/tmp", "/__skylift")


def check(secrets: Any, volumes: Any, owner: str) -> tuple[list[Any], dict[str, Any]]:
    """Validate `secrets=` and `volumes=`; returns them as a list and a {normalised path: object} dict."""
    from .cloud_bucket_mount import CloudBucketMount
    from .secret import Secret
    from .volume import Volume

    if secrets is None:
        secrets = []
    if not isinstance(secrets, (list, tuple)):
        raise InvalidError(f"{owner}: secrets= must be a list of modal.Secret")
    for secret in secrets:
        if not isinstance(secret, Secret):
            raise InvalidError(f"{owner}: secrets= must hold modal.Secret objects, got {type(secret).__name__} "
                               "(use modal.Secret.from_dict({...}) for plain values)")
    if volumes is None:
        volumes = {}
    if not isinstance(volumes, dict):
        raise InvalidError(f"{owner}: volumes= must be a dict of mount path to modal.Volume or CloudBucketMount")
    out: dict[str, Any] = {}
    for raw_path, volume in volumes.items():
        path = check_mount_path(str(raw_path), owner)
        if not isinstance(volume, (Volume, CloudBucketMount)):
            raise InvalidError(f"{owner}: volumes[{raw_path!r}] must be a modal.Volume or modal.CloudBucketMount, "
                               f"got {type(volume).__name__}")
        for other in out:
            if path.startswith(other + "/") or other.startswith(path + "/"):
                raise InvalidError(f"{owner}: volume mount paths {other!r} and {path!r} overlap")
        out[path] = volume
    return list(secrets), out


def check_mount_path(path: str, owner: str) -> str:
    if not path.startswith("/"):
        raise InvalidError(f"{owner}: volume mount path {path!r} must be absolute, e.g. '/data'")
    normalized = posixpath.normpath(path)
    if ".." in path.split("/"):
        raise InvalidError(f"{owner}: volume mount path {path!r} must not contain '..'")
    if normalized in RESERVED or normalized.startswith(("/proc/", "/sys/", "/dev/", "/__skylift/")):
        raise InvalidError(f"{owner}: can't mount a volume at {normalized!r}; choose a path of its own, "
                           "e.g. '/data' or '/root/cache'")
    return normalized


async def resolve(app: App | None, fn: Function) -> dict[str, Any]:
    """The definition fields for `fn`'s secrets and volumes (App-level ones first)."""
    opts = fn._options
    secrets = [*(app._secrets if app is not None else []), *(opts.get("secrets") or [])]
    volumes = {**(app._volumes if app is not None else {}), **(opts.get("volumes") or {})}
    return await resolve_objects(secrets, volumes)


async def resolve_objects(secrets: list[Any], volumes: dict[str, Any]) -> dict[str, Any]:
    from .cloud_bucket_mount import CloudBucketMount

    secret_ids = [await s._hydrate() for s in secrets]
    volume_ids: dict[str, str] = {}
    read_only: list[str] = []
    buckets: list[dict[str, Any]] = []
    for path, volume in volumes.items():
        if isinstance(volume, CloudBucketMount):
            secret_id = await volume.secret._hydrate() if volume.secret is not None else None
            buckets.append(volume._to_wire(path, secret_id))
        else:
            volume_ids[path] = await volume._hydrate()
            if getattr(volume, "_read_only", False):
                read_only.append(path)
    out = {"secret_ids": secret_ids, "volume_ids": volume_ids, "cloud_bucket_mounts": buckets}
    if read_only:  # only when used: definitions without read-only mounts stay as they were
        out["volume_read_only"] = sorted(read_only)
    return out


def overrides(options: dict[str, Any], owner: str) -> dict[str, Any]:
    """`with_options(secrets=..., volumes=...)`: the definition fields they replace, resolved now."""
    from ._client import run_sync

    fields: dict[str, Any] = {}
    if "secrets" not in options and "volumes" not in options:
        return fields
    secrets, volumes = check(options.get("secrets"), options.get("volumes"), owner)
    resolved = run_sync(resolve_objects(secrets, volumes))
    if "secrets" in options:
        fields["secret_ids"] = resolved["secret_ids"]
    if "volumes" in options:
        fields["volume_ids"] = resolved["volume_ids"]
        fields["volume_read_only"] = resolved.get("volume_read_only", [])
        fields["cloud_bucket_mounts"] = resolved["cloud_bucket_mounts"]
    return fields
