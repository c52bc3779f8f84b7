"""Validation of the resource and scaling arguments of `@app.function` / `@app.cls`.

Pure functions: each takes what the user wrote and returns its wire form, or raises an
`InvalidError` that names the parameter, the bad value and what is allowed.

    gpu="H100:2"              -> {"type": "H100", "count": 2, "fallbacks": []}
    gpu=["H100", "A100:2"]    -> {"type": "H100", "count": 1, "fallbacks": [{"type": "A100", "count": 2}]}
    cpu=(1.0, 4.0)            -> (1.0, 4.0)        request, limit
    memory=2048               -> (2048, None)      MiB request, no hard limit
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._protocol import api
from .exception import InvalidError

# Canonical GPU names, keyed by their lower-case spelling. "A100" may be served by either A100
# size and "H100" by an H200 (Modal's upgrades); "H100!" pins an H100. "A10G" keeps its name (as in
# Modal, and in what the user reads back) and is the same GPU as "A10". See `gpu_matches`.
GPU_TYPES: dict[str, str] = {
    "t4": "T4",
    "l4": "L4",
    "a10": "A10",
    "a10g": "A10G",
    "a100": "A100",
    "a100-40gb": "A100-40GB",
    "a100-80gb": "A100-80GB",
    "l40s": "L40S",
    "h100": "H100",
    "h100!": "H100!",
    "h200": "H200",
    "b200": "B200",
    "any": "ANY",
}
MAX_GPU_COUNT = 8
MAX_GPU_COUNT_BY_TYPE = {"A10": 4, "A10G": 4}
_SAME_GPU = {"A10G": "A10"}  # other names of one GPU, for matching

DEFAULT_CPU = 0.125
DEFAULT_MEMORY_MB = 128
MAX_EPHEMERAL_DISK_MB = 3 * 1024 * 1024  # 3 TiB
MIN_TIMEOUT = 1
MAX_TIMEOUT = 24 * 3600
MIN_SCALEDOWN_WINDOW = 2
MAX_SCALEDOWN_WINDOW = 20 * 60

_GPU_HELP = ('use a GPU name ("T4", "L4", "A10", "A100", "A100-40GB", "A100-80GB", "L40S", "H100", '
             '"H100!", "H200", "B200" or "any"), optionally with a count like "H100:2", or a list of '
             'them in order of preference')


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


# ---------------------------------------------------------------------------------------------
# GPU


def _parse_one_gpu(value: object, shown: str) -> dict[str, Any]:
    if not isinstance(value, str):
        if isinstance(value, bool):
            raise InvalidError(f"gpu={shown}: booleans are not accepted; {_GPU_HELP}.")
        raise InvalidError(
            f"gpu={shown}: {type(value).__name__} objects are not accepted (modal.gpu.* objects are "
            f"deprecated); {_GPU_HELP}.")
    name, sep, count_text = value.strip().partition(":")
    gpu_type = GPU_TYPES.get(name.strip().lower())
    if gpu_type is None:
        raise InvalidError(f"gpu={shown}: unknown GPU type {name.strip()!r}; {_GPU_HELP}.")
    count = 1
    if sep:
        try:
            count = int(count_text.strip())
        except ValueError:
            raise InvalidError(
                f"gpu={shown}: the count {count_text!r} after ':' must be an integer, e.g. \"{gpu_type}:2\"."
            ) from None
    limit = MAX_GPU_COUNT_BY_TYPE.get(gpu_type, MAX_GPU_COUNT)
    if not 1 <= count <= limit:
        raise InvalidError(f"gpu={shown}: {gpu_type} count must be between 1 and {limit}, got {count}.")
    return {"type": gpu_type, "count": count}


def parse_gpu(gpu: str | Sequence[str] | bool | None) -> dict[str, Any] | None:
    """Parse `gpu=` into `{"type", "count", "fallbacks": [{"type", "count"}, ...]}`, or None.

    Names are case-insensitive; "A10G" is the same GPU as "A10". A list is an ordered set of choices:
    the first is preferred, the rest are fallbacks.

    Example:
        >>> parse_gpu("h100:2")
        {'type': 'H100', 'count': 2, 'fallbacks': []}
        >>> parse_gpu(["L40S", "a10g:2"])["fallbacks"]
        [{'type': 'A10G', 'count': 2}]
    """
    if gpu is None or gpu is False:  # Modal accepts gpu=False for "no GPU"
        return None
    if isinstance(gpu, (list, tuple)):
        if not gpu:
            raise InvalidError(f"gpu={gpu!r}: an empty list; pass None for no GPU, or {_GPU_HELP}.")
        choices = [_parse_one_gpu(item, repr(gpu)) for item in gpu]
        return {**choices[0], "fallbacks": choices[1:]}
    return {**_parse_one_gpu(gpu, repr(gpu)), "fallbacks": []}


def gpu_matches(requested: str, available: str) -> bool:
    """Whether a worker GPU of type `available` can serve a request for type `requested`.

    Example:
        >>> gpu_matches("H100", "H200"), gpu_matches("H100!", "H200"), gpu_matches("A10G", "A10")
        (True, False, True)
    """
    if requested == "ANY":
        return True
    requested, available = _SAME_GPU.get(requested, requested), _SAME_GPU.get(available, available)
    if requested == available:
        return True
    if requested == "H100!":
        return available == "H100"
    if requested == "H100":
        return available == "H200"
    if requested == "A100":
        return available in ("A100-40GB", "A100-80GB")
    return False


# ---------------------------------------------------------------------------------------------
# CPU, memory, disk


def parse_cpu(cpu: float | tuple[float, float] | None) -> tuple[float, float | None] | None:
    """Parse `cpu=` (cores, or a `(request, limit)` pair) into `(request, limit or None)`.

    Example:
        >>> parse_cpu(2), parse_cpu((0.5, 4))
        ((2.0, None), (0.5, 4.0))
    """
    if cpu is None:
        return None
    if isinstance(cpu, tuple):
        if len(cpu) != 2 or not all(_is_number(v) for v in cpu):
            raise InvalidError(f"cpu={cpu!r}: a tuple must be (request, limit), two numbers of cores.")
        request, limit = float(cpu[0]), float(cpu[1])
        if request <= 0:
            raise InvalidError(f"cpu={cpu!r}: the CPU request must be a positive number of cores.")
        if limit < request:
            raise InvalidError(f"cpu={cpu!r}: the CPU limit {limit} is lower than the request {request}.")
        return request, limit
    if not _is_number(cpu):
        raise InvalidError(f"cpu={cpu!r}: pass a number of cores (e.g. 0.5, 2) or a (request, limit) tuple.")
    if cpu <= 0:
        raise InvalidError(f"cpu={cpu!r}: the CPU request must be a positive number of cores.")
    return float(cpu), None


def parse_memory(memory: int | tuple[int, int] | None) -> tuple[int, int | None] | None:
    """Parse `memory=` (MiB, or a `(request, limit)` pair) into `(request, limit or None)`.

    Example:
        >>> parse_memory(1024), parse_memory((512, 2048))
        ((1024, None), (512, 2048))
    """
    if memory is None:
        return None
    if isinstance(memory, tuple):
        if len(memory) != 2 or not all(_is_int(v) for v in memory):
            raise InvalidError(f"memory={memory!r}: a tuple must be (request, limit), two ints of MiB.")
        request, limit = memory
        if request <= 0:
            raise InvalidError(f"memory={memory!r}: the memory request must be a positive number of MiB.")
        if limit < request:
            raise InvalidError(f"memory={memory!r}: the memory limit {limit} MiB is lower than the request "
                               f"{request} MiB.")
        return request, limit
    if not _is_int(memory):
        raise InvalidError(
            f"memory={memory!r}: pass an int number of MiB (e.g. 2048) or a (request, limit) tuple.")
    if memory <= 0:
        raise InvalidError(f"memory={memory!r}: the memory request must be a positive number of MiB.")
    return memory, None


def parse_ephemeral_disk(ephemeral_disk: int | None) -> int | None:
    """Validate `ephemeral_disk=` in MiB (at most 3 TiB)."""
    if ephemeral_disk is None:
        return None
    if not _is_int(ephemeral_disk) or not 0 < ephemeral_disk <= MAX_EPHEMERAL_DISK_MB:
        raise InvalidError(f"ephemeral_disk={ephemeral_disk!r}: pass an int number of MiB between 1 and "
                           f"{MAX_EPHEMERAL_DISK_MB} (3 TiB).")
    return ephemeral_disk


def validate_resources(
    *,
    cpu: float | tuple[float, float] | None = None,
    memory: int | tuple[int, int] | None = None,
    gpu: str | Sequence[str] | None = None,
    ephemeral_disk: int | None = None,
) -> dict[str, Any]:
    """The `resources` dict of a FunctionDefinition; None means the platform default.

    Example:
        >>> r = validate_resources(cpu=(1, 2), memory=512)
        >>> r["cpu"], r["cpu_limit"], r["memory"], r["memory_limit"], r["gpu"], r["ephemeral_disk"]
        (1.0, 2.0, 512, None, None, None)
    """
    cpu_pair = parse_cpu(cpu)
    memory_pair = parse_memory(memory)
    return {
        "cpu": cpu_pair[0] if cpu_pair else None,
        "cpu_limit": cpu_pair[1] if cpu_pair else None,
        "memory": memory_pair[0] if memory_pair else None,
        "memory_limit": memory_pair[1] if memory_pair else None,
        "gpu": parse_gpu(gpu),
        "ephemeral_disk": parse_ephemeral_disk(ephemeral_disk),
    }


# ---------------------------------------------------------------------------------------------
# Timeouts


def validate_timeout(timeout: float | None, *, name: str = "timeout") -> int:
    """Validate an execution timeout in seconds (1 s to 24 h); fractions round up.

    Example:
        >>> validate_timeout(300), validate_timeout(0.5 + 1)
        (300, 2)
    """
    if timeout is None:
        raise InvalidError(f"{name}=None: a timeout is required; pass seconds between {MIN_TIMEOUT} and "
                           f"{MAX_TIMEOUT} (24 h), e.g. {name}={MAX_TIMEOUT} for the longest.")
    if not _is_number(timeout) or not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        raise InvalidError(
            f"{name}={timeout!r}: pass seconds between {MIN_TIMEOUT} and {MAX_TIMEOUT} (24 h).")
    return math.ceil(timeout)


def validate_startup_timeout(startup_timeout: float | None) -> int | None:
    """Validate `startup_timeout=` like `timeout`; None means "same as timeout"."""
    if startup_timeout is None:
        return None
    return validate_timeout(startup_timeout, name="startup_timeout")


# ---------------------------------------------------------------------------------------------
# Autoscaler


def validate_autoscaler(
    *,
    min_containers: int | None = None,
    max_containers: int | None = None,
    buffer_containers: int | None = None,
    scaledown_window: int | None = None,
    partial: bool = False,
) -> dict[str, Any]:
    """Validate autoscaler settings and return AutoscalerSettings.

    With `partial=True` (for `update_autoscaler`) only the given settings are returned and defaults
    are not filled in.

    Example:
        >>> validate_autoscaler(min_containers=1, max_containers=4)
        {'min_containers': 1, 'max_containers': 4, 'buffer_containers': 0, 'scaledown_window': 60}
        >>> validate_autoscaler(scaledown_window=300, partial=True)
        {'scaledown_window': 300}
    """
    given: dict[str, Any] = {}
    if min_containers is not None:
        if not _is_int(min_containers) or min_containers < 0:
            raise InvalidError(f"min_containers={min_containers!r}: pass an int of 0 or more.")
        given["min_containers"] = min_containers
    if max_containers is not None:
        if not _is_int(max_containers) or max_containers < 1:
            raise InvalidError(
                f"max_containers={max_containers!r}: pass an int of 1 or more (or None for no cap).")
        given["max_containers"] = max_containers
    if min_containers is not None and max_containers is not None and max_containers < min_containers:
        raise InvalidError(f"max_containers={max_containers} is lower than min_containers={min_containers}; "
                           "max_containers must be at least min_containers.")
    if buffer_containers is not None:
        if not _is_int(buffer_containers) or buffer_containers < 0:
            raise InvalidError(f"buffer_containers={buffer_containers!r}: pass an int of 0 or more.")
        given["buffer_containers"] = buffer_containers
    if scaledown_window is not None:
        if not _is_number(scaledown_window) or not (
                MIN_SCALEDOWN_WINDOW <= scaledown_window <= MAX_SCALEDOWN_WINDOW):
            raise InvalidError(f"scaledown_window={scaledown_window!r}: pass seconds between "
                               f"{MIN_SCALEDOWN_WINDOW} and {MAX_SCALEDOWN_WINDOW} (20 minutes).")
        given["scaledown_window"] = math.ceil(scaledown_window)
    if partial:
        return given
    return {
        "min_containers": given.get("min_containers", 0),
        "max_containers": given.get("max_containers"),
        "buffer_containers": given.get("buffer_containers", 0),
        "scaledown_window": given.get("scaledown_window", api.DEFAULT_SCALEDOWN_WINDOW),
    }


# ---------------------------------------------------------------------------------------------
# Placement


def _parse_labels(name: str, value: str | Sequence[str] | None, example: str) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(
            isinstance(v, str) and v.strip() for v in items):
        raise InvalidError(f"{name}={value!r}: pass a non-empty string or list of strings, e.g. {example}.")
    return [v.strip().lower() for v in items]


def parse_region(region: str | Sequence[str] | None) -> list[str] | None:
    """Validate `region=` (a string or list of them) into a list of lower-case labels.

    Example:
        >>> parse_region("us-east"), parse_region(["us", "eu-west"])
        (['us-east'], ['us', 'eu-west'])
    """
    return _parse_labels("region", region, '"us-east" or ["us", "eu"]')


def parse_cloud(cloud: str | Sequence[str] | None) -> list[str] | None:
    """Validate `cloud=` (a string or list of them) into a list of lower-case labels."""
    return _parse_labels("cloud", cloud, '"aws" or ["aws", "gcp"]')
