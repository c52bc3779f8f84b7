"""Validate and normalise the options of `@app.function`, `@app.cls` and `with_options`.

Every Modal parameter is accepted and either applied or stored in the definition for the part of
the platform that implements it; none is silently dropped. Deprecated aliases still work, with a
DeprecationWarning naming the new spelling.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any

from . import _resources
from .exception import InvalidError
from .retries import parse_retries

if TYPE_CHECKING:
    from .app import App
    from .partial_function import PartialFunction

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

_KNOWN = {
    "image", "schedule", "secrets", "env", "gpu", "serialized", "volumes", "network_file_systems", "cpu", "memory",
    "ephemeral_disk", "min_containers", "max_containers", "buffer_containers", "scaledown_window", "proxy",
    "retries", "timeout", "startup_timeout", "name", "is_generator", "cloud", "region", "nonpreemptible",
    "enable_memory_snapshot", "block_network", "restrict_modal_access", "single_use_containers", "max_inputs",
    "i6pn", "include_source", "experimental_options", "_experimental_restrict_output", "routing_region",
    "cloud_bucket_mounts", "_experimental_scheduler_placement", "scheduler_placement",
    # deprecated aliases
    "keep_warm", "concurrency_limit", "container_idle_timeout", "allow_concurrent_inputs",
    "_experimental_buffer_containers", "mounts", "concurrency", "batching",
}

_ALIASES = {
    "keep_warm": "min_containers",
    "concurrency_limit": "max_containers",
    "container_idle_timeout": "scaledown_window",
    "_experimental_buffer_containers": "buffer_containers",
}

DEFAULT_TIMEOUT = 300


def check_object_name(name: str, kind: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidError(f"{kind} name {name!r} is invalid: use up to 64 letters, digits, '.', '_' or '-'")


def check_secrets_and_volumes(secrets: Any, volumes: Any, owner: str) -> tuple[list[Any], dict[str, Any]]:
    """Validate `secrets=` and `volumes=` (see `_attachments`); returns them normalised."""
    from . import _attachments

    return _attachments.check(secrets, volumes, owner)


def _apply_aliases(options: dict[str, Any], name: str) -> dict[str, Any]:
    opts = dict(options)
    for old, new in _ALIASES.items():
        if old in opts:
            warnings.warn(f"{name}: {old}= is deprecated; use {new}=", DeprecationWarning, stacklevel=4)
            value = opts.pop(old)
            if opts.get(new) is None:
                opts[new] = value
    if "allow_concurrent_inputs" in opts:
        value = opts.pop("allow_concurrent_inputs")
        warnings.warn(f"{name}: allow_concurrent_inputs= is deprecated; use @modal.concurrent(max_inputs=...)",
                      DeprecationWarning, stacklevel=4)
        if value:
            opts["concurrency"] = {"max_inputs": int(value), "target_inputs": None}
    if "max_inputs" in opts:
        value = opts.pop("max_inputs")
        if value == 1:
            warnings.warn(f"{name}: max_inputs=1 is deprecated; use single_use_containers=True",
                          DeprecationWarning, stacklevel=4)
            opts["single_use_containers"] = True
        elif value is not None:
            raise InvalidError(f"{name}: max_inputs={value!r} is not supported; only max_inputs=1 "
                               "(single_use_containers=True)")
    if opts.get("mounts"):
        raise InvalidError(f"{name}: mounts= was removed in Modal 1.0; use Image.add_local_dir/add_local_file/"
                           "add_local_python_source")
    opts.pop("mounts", None)
    return opts


def function_options(options: dict[str, Any], *, name: str, partial: PartialFunction | None,
                     app: App) -> dict[str, Any]:
    unknown = set(options) - _KNOWN
    if unknown:
        raise InvalidError(f"@app.function({name}) got unknown parameter(s): {', '.join(sorted(unknown))}")
    opts = _apply_aliases(options, name)
    out: dict[str, Any] = {}
    image = opts.get("image")
    if image is not None:
        from .image import Image

        if not isinstance(image, Image):
            raise InvalidError(f"{name}: image= must be a modal.Image, got {type(image).__name__}")
    out["image"] = image
    volumes = dict(opts.get("volumes") or {})
    volumes.update(opts.get("cloud_bucket_mounts") or {})  # Modal's older spelling for bucket mounts
    out["secrets"], out["volumes"] = check_secrets_and_volumes(opts.get("secrets"), volumes, owner=name)
    if opts.get("network_file_systems"):
        raise InvalidError(f"{name}: network_file_systems= is deprecated in Modal and not supported; use volumes=")
    out["env"] = check_env(opts.get("env"), name)
    try:
        out["resources"] = _resources.validate_resources(cpu=opts.get("cpu"), memory=opts.get("memory"),
                                                         gpu=opts.get("gpu"),
                                                         ephemeral_disk=opts.get("ephemeral_disk"))
        out["timeout"] = _resources.validate_timeout(opts.get("timeout", DEFAULT_TIMEOUT))
        out["startup_timeout"] = _resources.validate_startup_timeout(opts.get("startup_timeout"))
        out["autoscaler"] = _resources.validate_autoscaler(
            min_containers=opts.get("min_containers"), max_containers=opts.get("max_containers"),
            buffer_containers=opts.get("buffer_containers"), scaledown_window=opts.get("scaledown_window"))
        out["region"] = _resources.parse_region(opts.get("region"))
        out["cloud"] = _resources.parse_cloud(opts.get("cloud"))
    except InvalidError as exc:
        raise InvalidError(f"{name}: {exc}") from None
    try:
        out["retries"] = parse_retries(opts.get("retries"))
    except InvalidError as exc:
        raise InvalidError(f"{name}: {exc}") from None
    schedule = opts.get("schedule")
    if schedule is not None:
        from .schedule import Schedule

        if not isinstance(schedule, Schedule):
            raise InvalidError(f"{name}: schedule= must be modal.Period(...) or modal.Cron(...)")
        out["schedule"] = schedule._to_wire()
    out["concurrency"] = opts.get("concurrency")
    out["batching"] = opts.get("batching")
    if partial is not None:
        from .partial_function import Flag

        if Flag.CONCURRENT in partial.flags:
            out["concurrency"] = {"max_inputs": partial.max_concurrent_inputs,
                                  "target_inputs": partial.target_concurrent_inputs}
        if Flag.BATCHED in partial.flags:
            out["batching"] = {"max_batch_size": partial.max_batch_size, "wait_ms": partial.batch_wait_ms}
        if Flag.WEB in partial.flags:
            out["web"] = dict(partial.web_config)
            if out["retries"]:
                raise InvalidError(f"{name}: retries are not supported on web endpoints")
    if out["batching"] and out["concurrency"]:
        raise InvalidError(f"{name}: @modal.batched and @modal.concurrent can't be combined")
    for flag in ("serialized", "enable_memory_snapshot", "block_network", "single_use_containers",
                 "nonpreemptible", "restrict_modal_access", "i6pn"):
        out[flag] = bool(opts.get(flag, False))
    out["include_source"] = opts.get("include_source")
    out["experimental_options"] = dict(opts.get("experimental_options") or {})
    out["placement"] = {k: opts[k] for k in ("routing_region", "proxy", "scheduler_placement",
                                             "_experimental_scheduler_placement") if opts.get(k) is not None}
    if out["placement"].get("proxy") is not None:
        raise InvalidError(f"{name}: proxy= (static egress IPs) is not available on skylift")
    for key in ("scheduler_placement", "_experimental_scheduler_placement"):
        placement = out["placement"].pop(key, None)
        if placement is None:
            continue
        from .scheduler_placement import SchedulerPlacement

        if not isinstance(placement, SchedulerPlacement):
            raise InvalidError(f"{name}: {key}= takes a modal.SchedulerPlacement, not {placement!r}")
        out["placement"]["scheduler_placement"] = placement._to_wire()
    return out


_OVERRIDABLE = {"cpu", "memory", "gpu", "env", "secrets", "volumes", "retries", "max_containers",
                "buffer_containers", "scaledown_window", "min_containers", "timeout", "region", "cloud",
                "concurrency", "batching", "routing_region", "ephemeral_disk"}


def check_env(env: Any, name: str) -> dict[str, str]:
    """`env=`: str to str; keys set to None are left out (Modal's `Secret.from_dict` rule)."""
    env = env or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                            for k, v in env.items()):
        raise InvalidError(f"{name}: env= must be a dict of str to str (or None, to leave a key out)")
    return {k: v for k, v in env.items() if v is not None}


def validate_overrides(options: dict[str, Any], *, name: str) -> dict[str, Any]:
    """`with_options(...)`: validated fields of the definition to replace."""
    unknown = set(options) - _OVERRIDABLE
    if unknown:
        raise InvalidError(f"{name}.with_options() got unknown option(s): {', '.join(sorted(unknown))}")
    from . import _attachments

    out: dict[str, Any] = _attachments.overrides(options, f"{name}.with_options")
    try:
        res = _resources.validate_resources(cpu=options.get("cpu"), memory=options.get("memory"),
                                            gpu=options.get("gpu"), ephemeral_disk=options.get("ephemeral_disk"))
        for key in ("cpu", "memory", "gpu", "ephemeral_disk"):
            if options.get(key) is not None:
                out[key] = res[key]
                if key in ("cpu", "memory"):
                    out[f"{key}_limit"] = res[f"{key}_limit"]
        scaler = _resources.validate_autoscaler(
            min_containers=options.get("min_containers"), max_containers=options.get("max_containers"),
            buffer_containers=options.get("buffer_containers"), scaledown_window=options.get("scaledown_window"),
            partial=True)
        out.update(scaler)
        # None leaves the function's own setting (Modal's with_options(timeout=None)).
        if options.get("timeout") is not None:
            out["timeout"] = _resources.validate_timeout(options["timeout"])
        if options.get("retries") is not None:
            out["retries"] = parse_retries(options["retries"])
    except InvalidError as exc:
        raise InvalidError(f"{name}.with_options: {exc}") from None
    if options.get("env") is not None:
        out["env"] = check_env(options["env"], f"{name}.with_options")
    for key in ("region", "cloud", "concurrency", "batching"):
        if key in options:
            out[key] = options[key]
    return out
