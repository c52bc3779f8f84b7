"""Turn a decorated function or class into the wire `FunctionDefinition` (see `_protocol.api`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from .exception import InvalidError

if TYPE_CHECKING:
    from .functions import Function

MAX_SERIALIZED_BYTES = 16 * 1024 * 1024


def _user_object(fn: Function) -> Any:
    if fn._cls is not None and fn._method is None:
        return fn._cls._user_cls
    return fn._raw_f


def function_code_location(fn: Function) -> tuple[str | None, str, bytes | None]:
    """(module to import in the container, qualname in it, or the pickled object when serialized)."""
    obj = _user_object(fn)
    if obj is None:
        raise InvalidError(f"{fn._tag} has no local definition")
    qualname = getattr(obj, "__qualname__", fn._tag)
    module = getattr(obj, "__module__", None)
    if fn._options.get("serialized"):
        data = cloudpickle.dumps(obj, protocol=4)
        if len(data) > MAX_SERIALIZED_BYTES:
            raise InvalidError(f"{fn._tag} pickles to {len(data) >> 20} MiB with serialized=True; the limit is 16 MiB")
        return None, qualname, data
    if "<locals>" in qualname or module is None:
        raise InvalidError(
            f"{fn._tag} is defined inside another function ({qualname}); functions must be defined at module "
            "level, or decorated with serialized=True")
    if module == "__main__":
        main_file = getattr(sys.modules["__main__"], "__file__", None)
        if main_file is None:
            raise InvalidError(f"{fn._tag} is defined in an interactive session; use serialized=True")
        module = Path(main_file).stem
        # Importing the script in the container under its file name must find the same object.
        sys.modules.setdefault(module, sys.modules["__main__"])
    return module, qualname, None


def build_definition(fn: Function, image_id: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    opts = fn._options
    module, qualname, serialized = function_code_location(fn)
    is_class = fn._cls is not None
    definition: dict[str, Any] = {
        "tag": fn._tag,
        "module": module,
        "qualname": qualname,
        "serialized": serialized,
        "is_class": is_class,
        "methods": opts.get("methods", {}) if is_class else {},
        # A class's modal.parameter() names, and the encoded Cls() parameter set when all have defaults:
        # the pool min_containers keeps warm with no traffic (parameter sets get pools when first called).
        "parameters": opts.get("parameters", []) if is_class else [],
        "default_params": opts.get("default_params") if is_class else None,
        "is_generator": fn._is_generator,
        "image_id": image_id,
        "mounts": mounts,
        "resources": opts.get("resources", {}),
        "timeout": opts.get("timeout"),
        "startup_timeout": opts.get("startup_timeout"),
        "retries": opts.get("retries"),
        "autoscaler": opts.get("autoscaler"),
        "concurrency": opts.get("concurrency"),
        "batching": opts.get("batching"),
        "single_use_containers": bool(opts.get("single_use_containers")),
        "schedule": opts.get("schedule"),
        "enable_memory_snapshot": bool(opts.get("enable_memory_snapshot")),
        "region": opts.get("region"),
        "cloud": opts.get("cloud"),
        "block_network": bool(opts.get("block_network")),
        "secret_ids": [],
        "volume_ids": {},
        "env": opts.get("env") or {},
        "web": opts.get("web"),
        "experimental_options": opts.get("experimental_options") or {},
        "placement": opts.get("placement") or {},
    }
    return definition
