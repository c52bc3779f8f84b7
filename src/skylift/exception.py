"""Exceptions raised by skylift, with Modal's names.

    Error                       root of everything skylift raises
    ├── AuthError               bad or missing token
    ├── ConnectionError         the control plane can't be reached
    │   └── ControlPlaneUnavailableError  it was lost and didn't come back within the retry window
    ├── InvalidError            bad input: a wrong argument, a malformed definition
    ├── NotFoundError           no object by that name or id
    ├── AlreadyExistsError      an object by that name exists already
    ├── ExecutionError          the remote side failed in a way that isn't a user exception
    ├── RemoteError             the remote side raised an exception that can't be rebuilt locally
    ├── DeserializationError    a payload can't be unpickled (often a version mismatch)
    ├── SerializationError      an argument or result can't be pickled
    ├── RequestSizeError        a payload is over the size limit
    ├── TimeoutError            a waited-on operation took too long
    │   ├── FunctionTimeoutError    an attempt ran past the function's timeout
    │   └── OutputExpiredError      a spawned call's result is older than the retention period
    ├── InputCancellation       the input was cancelled
    ├── ResourceExhaustedError  no capacity (queue full, GPU missing)
    ├── VersionError            client and server versions differ
    └── DeprecationError        a removed API was used

Remote exceptions are re-raised locally as their own type, with the remote traceback attached
as `__notes__` (shown in the printed traceback) and in `exc.__skylift_remote_traceback__`.
"""

from __future__ import annotations

import builtins


class Error(Exception):
    """Root of every exception skylift raises."""


class AuthError(Error):
    pass


class ConnectionError(Error):
    pass


class ControlPlaneUnavailableError(ConnectionError):
    """The control plane went away mid-call and didn't come back within the retry window
    (SKYLIFT_RETRY_WINDOW, 60 s by default; docs/exactly-once.md)."""


class InvalidError(Error):
    pass


class NotFoundError(Error):
    pass


class AlreadyExistsError(Error):
    pass


class ExecutionError(Error):
    pass


class RemoteError(Error):
    pass


class DeserializationError(Error):
    pass


class SerializationError(Error):
    pass


class RequestSizeError(Error):
    pass


class TimeoutError(Error, builtins.TimeoutError):
    pass


class FunctionTimeoutError(TimeoutError):
    pass


class OutputExpiredError(TimeoutError):
    pass


class InputCancellation(Error):
    pass


class ResourceExhaustedError(Error):
    pass


class VersionError(Error):
    pass


class DeprecationError(Error):
    pass


class InternalFailure(Error):
    """The platform failed (worker lost, container crashed); the input may be retried."""


class ClientClosed(Error):
    pass


__all__ = [
    "AlreadyExistsError", "AuthError", "ClientClosed", "ConnectionError", "ControlPlaneUnavailableError",
    "DeprecationError",
    "DeserializationError", "Error", "ExecutionError", "FunctionTimeoutError", "InputCancellation",
    "InternalFailure", "InvalidError", "NotFoundError", "OutputExpiredError", "RemoteError",
    "RequestSizeError", "ResourceExhaustedError", "SerializationError", "TimeoutError", "VersionError",
]
