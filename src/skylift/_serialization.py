"""Pickling of arguments, results and exceptions (cloudpickle, like Modal), on both sides.

The control plane never unpickles: everything here runs in the SDK or in the container.
"""

from __future__ import annotations

import functools
import pickle
import platform
import sys
import traceback
from typing import Any

import cloudpickle
import msgpack

from ._protocol import api
from .exception import (
    DeserializationError,
    ExecutionError,
    FunctionTimeoutError,
    InternalFailure,
    RemoteError,
    RequestSizeError,
    SerializationError,
    _CallCancelledError,
)

PICKLE_PROTOCOL = 4


@functools.cache
def library_versions() -> dict[str, str]:
    """What a pickle's meaning depends on: the interpreter and the pickler (every output carries
    them: computed once; callers must not change the dict)."""
    return {"python": platform.python_version(), "cloudpickle": cloudpickle.__version__}


def serialize(obj: Any, *, what: str = "value") -> bytes:
    try:
        data: bytes = _dumps(obj)
    except Exception as exc:
        raise SerializationError(
            f"could not pickle the {what} ({type(obj).__name__}): {exc}. Pass only picklable objects "
            "(plain data, or classes importable in the container), or serialize it yourself to bytes."
        ) from exc
    if len(data) > api.MAX_PAYLOAD_BYTES:
        raise RequestSizeError(
            f"{what}: {len(data) / 2**20:.1f} MiB pickled, over the limit of "
            f"{api.MAX_PAYLOAD_BYTES // 2**20} MiB. Put large data in a Volume and pass its path instead."
        )
    return data


def _dumps(obj: Any) -> bytes:
    # The C pickler is several times faster than cloudpickle for plain data (the common case on
    # the hot path). Anything that refers to __main__ would be pickled by a reference the other
    # side can't resolve, so that, and anything pickle refuses, goes through cloudpickle.
    try:
        data = pickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    except Exception:
        return bytes(cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL))
    if b"__main__" in data:
        return bytes(cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL))
    return data


def serialize_args(args: tuple[Any, ...], kwargs: dict[str, Any], *, function_name: str) -> bytes:
    return serialize((args, kwargs), what=f"arguments of {function_name}")


def deserialize(data: bytes, *, what: str = "value", remote_versions: dict[str, str] | None = None) -> Any:
    try:
        return pickle.loads(data)
    except Exception as exc:
        message = _mismatch_message(f"could not unpickle the {what}: {exc!r}", remote_versions)
        raise DeserializationError(message) from exc


def _mismatch_message(message: str, remote_versions: dict[str, str] | None) -> str:
    local = library_versions()
    if not remote_versions:
        return message
    diffs = [f"{name} {remote_versions[name]} remotely vs {local[name]} locally"
             for name in local if name in remote_versions and remote_versions[name] != local[name]]
    if diffs:
        return (f"{message}. This is likely a version mismatch: {'; '.join(diffs)}. Use the same "
                "Python and library versions in the image as locally (e.g. debian_slim(python_version=...)).")
    return message


# ---------------------------------------------------------------------------------------------
# Outputs (built in the container, read by the SDK)


def success_output(value: Any, *, function_name: str | None = None) -> dict[str, Any]:
    what = f"return value of {function_name}" if function_name else "return value"
    return {"status": api.STATUS_SUCCESS, "data": serialize(value, what=what),
            "library_versions": library_versions()}


def failure_output(exc: BaseException, status: str = api.STATUS_FAILURE) -> dict[str, Any]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    out: dict[str, Any] = {
        "status": status,
        "exc_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "exc_message": str(exc),
        "traceback": tb,
        "library_versions": library_versions(),
    }
    try:
        exc_copy = exc.with_traceback(None)
        out["data"] = cloudpickle.dumps(exc_copy, protocol=PICKLE_PROTOCOL)
        pickle.loads(out["data"])  # an exception that can't round-trip is sent as text only
    except Exception:
        out.pop("data", None)
    return out


def raise_for_output(output: dict[str, Any], *, function_name: str) -> Any:
    """Turn an Output into the return value, or raise what the remote side raised."""
    status = output.get("status")
    versions = output.get("library_versions")
    if status == api.STATUS_SUCCESS:
        data = output.get("data")
        return None if data is None else deserialize(data, what=f"result of {function_name}", remote_versions=versions)
    raise exception_from_output(output, function_name=function_name)


def exception_from_output(output: dict[str, Any], *, function_name: str) -> BaseException:
    status = output.get("status")
    tb = output.get("traceback") or ""
    message = output.get("exc_message") or ""
    if status == api.STATUS_TIMEOUT:
        return FunctionTimeoutError(message or f"{function_name} timed out")
    if status == api.STATUS_TERMINATED:
        return _CallCancelledError(message or f"the input to {function_name} was cancelled")
    if status == api.STATUS_INTERNAL_FAILURE:
        return InternalFailure(message or f"{function_name} failed inside the platform")
    if status == api.STATUS_INIT_FAILURE:
        err: BaseException = ExecutionError(
            f"the container for {function_name} failed to start: {message}\n\nRemote traceback:\n{tb}")
        return err
    data = output.get("data")
    exc: BaseException | None = None
    if data is not None:
        try:
            loaded = pickle.loads(data)
            if isinstance(loaded, BaseException):
                exc = loaded
        except Exception:
            exc = None
    if exc is None:
        exc_type = output.get("exc_type", "Exception")
        text = f"{exc_type}: {message}"
        exc = RemoteError(f"{function_name} raised {text}\n\nRemote traceback:\n{tb}") if tb else RemoteError(text)
        return exc
    if isinstance(exc, DeserializationError):
        # The container couldn't unpickle what this side sent: name both sides' versions.
        exc = DeserializationError(_mismatch_message(str(exc), output.get("library_versions")))
    _attach_remote_traceback(exc, tb)
    return exc


def _attach_remote_traceback(exc: BaseException, tb: str) -> None:
    if not tb:
        return
    exc.__skylift_remote_traceback__ = tb  # type: ignore[attr-defined]
    if sys.version_info >= (3, 11):
        # The note is what a plain `python script.py` prints: the container's frames of skylift's
        # runtime and the stdlib are plumbing (SKYLIFT_TRACEBACK=1 keeps them). Imported here, as
        # only a failure needs it.
        from . import _traceback

        shown = tb if _traceback.full_requested() else _traceback.trim_text(tb)[0]
        exc.add_note(_traceback.REMOTE_NOTE_PREFIX + shown.rstrip())


# ---------------------------------------------------------------------------------------------
# Class parameters: a deterministic encoding, since equal parameters must give the same pool key.

PARAM_TYPES = (str, int, bool, bytes)


def encode_params(params: dict[str, Any]) -> bytes | None:
    if not params:
        return None
    for name, value in params.items():
        if not isinstance(value, PARAM_TYPES):
            raise SerializationError(
                f"class parameter {name!r} is a {type(value).__name__}; modal.parameter() values must be "
                "str, int, bool or bytes")
    data: bytes = msgpack.packb(sorted(params.items()), use_bin_type=True)
    return data


def decode_params(data: bytes | None) -> dict[str, Any]:
    if not data:
        return {}
    return {k: v for k, v in msgpack.unpackb(data, raw=False)}
