"""Content hashes: of local files, and of an image's chain of layers.

Every process that names an image layer (the SDK, the control plane, the worker) must agree on its
id, so the recipe lives here, small and stable:

    id_0 = sha256(b""     + canonical(layer_0))
    id_k = sha256(id_{k-1} + canonical(layer_k))        ids as lowercase hex; the parent id as ASCII

`canonical(layer)` is msgpack of `{"builder": BUILDER_VERSION, "step", "args", "files"}` with every
map's keys sorted, so equal definitions give equal bytes in any process. `force_build` is left out
(a forced build replaces the layer under the same id). A layer whose `args` carry a `cache_key`
vouches for its own identity and its files are left out; `run_function` uses this because a pickled
function's bytes change between processes while its source does not.

Changing anything here renames every cached layer; bump BUILDER_VERSION when a change to how steps
are *built* must invalidate old layers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack

BUILDER_VERSION = "skylift-2025.1"

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """The lowercase hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The lowercase hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sorted(value: Any) -> Any:
    # msgpack keeps insertion order; sorting every map makes the encoding canonical.
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_sorted(v) for v in value]
    return value


def canonical(value: Any) -> bytes:
    """Deterministic msgpack bytes of a msgpack-native value (maps sorted by key)."""
    data: bytes = msgpack.packb(_sorted(value), use_bin_type=True)
    return data


def layer_key(layer: Mapping[str, Any]) -> bytes:
    """The bytes a layer's id is derived from (see the module docstring)."""
    args = layer.get("args") or {}
    if "cache_key" in args:
        files: list[Any] = []
    else:
        files = sorted(
            ([f["path"], f["sha256"], int(f["mode"])] for f in layer.get("files") or []),
            key=lambda entry: entry[0],
        )
    return canonical({"builder": BUILDER_VERSION, "step": layer["step"], "args": args, "files": files})


def layer_chain_ids(definition: Mapping[str, Any]) -> list[str]:
    """The id of every layer of an ImageDefinition, base first; the last one names the image.

    Example:
        >>> base = {"step": "debian_slim", "args": {"python_version": "3.11"}, "files": []}
        >>> ids = layer_chain_ids({"layers": [base]})
        >>> len(ids), len(ids[0])
        (1, 64)
    """
    ids: list[str] = []
    parent = b""
    for layer in definition["layers"]:
        layer_id = hashlib.sha256(parent + layer_key(layer)).hexdigest()
        ids.append(layer_id)
        parent = layer_id.encode("ascii")
    return ids
