"""Exceptions raised by skylift: Modal's `modal.exception` tree, with Modal's names and bases
(`import modal` makes `modal.exception` this module, so `modal.Error is skylift.Error`).

    Exception
    ├── Error                       root of everything skylift raises (`modal.Error`)
    │   ├── AlreadyExistsError      an object by that name exists already
    │   ├── AuthError               bad or missing token
    │   ├── ClientClosed            the client was closed
    │   ├── ConnectionError         the control plane can't be reached
    │   │   └── ControlPlaneUnavailableError  (skylift) it was lost and didn't come back within the retry window
    │   ├── DataLossError           data was lost or corrupted
    │   ├── DeserializationError    a payload can't be unpickled (often a version mismatch)
    │   ├── ExecutionError          the remote side failed in a way that isn't a user exception
    │   ├── InternalError           the platform failed answering a request
    │   ├── InternalFailure         the platform failed running an input (worker lost); retriable
    │   ├── InvalidError            bad input: a wrong argument, a malformed definition
    │   │   └── ConflictError       the request conflicts with the current state
    │   ├── LogsFetchError          too many logs asked for
    │   ├── NotFoundError           no object by that name or id
    │   ├── PermissionDeniedError   the token may not do that
    │   ├── RemoteError             the remote side raised an exception that can't be rebuilt locally
    │   │   └── ImageBuildError     an image build failed (`image_id` names it)
    │   ├── RequestSizeError        a payload is over the size limit
    │   ├── ResourceExhaustedError  no capacity (queue full, GPU missing)
    │   ├── SandboxFilesystemError  a sandbox file operation failed (NotFound, DirectoryNotEmpty, IsADirectory,
    │   │                           NotADirectory, Permission, FileTooLarge, PathAlreadyExists subclasses)
    │   ├── SandboxTerminatedError  a sandbox was terminated for an internal reason
    │   ├── SerializationError      an argument or result can't be pickled
    │   ├── ServiceError            client/server communication failed
    │   ├── SnapshotCreationError   a snapshot failed; no image was made
    │   ├── TimeoutError            a waited-on operation took too long (also a builtins.TimeoutError)
    │   │   ├── ExecTimeoutError, FunctionTimeoutError, InteractiveTimeoutError, MountUploadTimeoutError,
    │   │   └── OutputExpiredError, SandboxTimeoutError, VolumeUploadTimeoutError
    │   ├── UnimplementedError      not implemented or not supported
    │   ├── VersionError            client and server versions differ
    │   └── WorkspaceManagementError
    ├── ModuleNotMountable          a module's source can't be mounted
    └── _CliUserExecutionError      (private) the user's code failed while the CLI imported or ran it
    BaseException
    └── InputCancellation           the input was cancelled (not an Exception: a bare `except Exception`
                                    in user code doesn't swallow it)
    UserWarning
    └── DeprecationError, PendingDeprecationError, ServerWarning, AsyncUsageWarning, InternalAPIWarning
                                    warning categories (DeprecationError is also raised for removed APIs)

Deliberate differences from Modal 1.6.4 (docs/modal-compatibility.md): Modal's gRPC-mapped errors also
derive from `grpclib.GRPCError` for a transition; skylift has no gRPC, so they don't. `UserCodeException`
(synchronicity's deprecated wrapper) does not exist.

Remote exceptions are re-raised locally as their own type, with the remote traceback attached
as `__notes__` (shown in the printed traceback) and in `exc.__skylift_remote_traceback__`.
"""

from __future__ import annotations

import builtins
import random
import signal
from types import FrameType


class Error(Exception):
    """Root of every exception skylift raises (`modal.Error`)."""


class AlreadyExistsError(Error):
    """A resource creation conflicts with an existing resource."""


class AuthError(Error):
    """Missing or invalid authentication."""


class InternalError(Error):
    """An internal error in the platform."""


class InvalidError(Error):
    """The user did something invalid."""


class ConflictError(InvalidError):
    """A resource conflict between the request and the current state."""


class DataLossError(Error):
    """Data was lost or corrupted."""


class NotFoundError(Error):
    """A requested resource was not found."""


class PermissionDeniedError(Error):
    """The caller may not perform the requested operation."""


class ResourceExhaustedError(Error):
    """A platform resource is exhausted (a quota, a full queue, no capacity)."""


class ServiceError(Error):
    """Basic client/server communication failed."""


class UnimplementedError(Error):
    """A requested operation is not implemented or not supported."""


class RemoteError(Error):
    """The remote side failed and its exception can't be rebuilt locally."""


class WorkspaceManagementError(Error):
    """Managing a workspace failed."""


class TimeoutError(Error, builtins.TimeoutError):
    """Base class for timeouts (also a `builtins.TimeoutError`, which Modal's is not)."""


class SandboxTimeoutError(TimeoutError):
    """A Sandbox ran past its execution limit."""


class SnapshotCreationError(Error):
    """A snapshot failed; polling again won't produce an Image."""


class ExecTimeoutError(TimeoutError):
    """A container process ran past its execution limit."""


class SandboxTerminatedError(Error):
    """A Sandbox was terminated for an internal reason."""


class FunctionTimeoutError(TimeoutError):
    """An attempt ran past the function's timeout."""


class MountUploadTimeoutError(TimeoutError):
    """A Mount upload timed out."""


class VolumeUploadTimeoutError(TimeoutError):
    """A Volume upload timed out."""


class LogsFetchError(Error):
    """Too many logs were asked for."""


class InteractiveTimeoutError(TimeoutError):
    """An interactive session timed out connecting to a container."""


class OutputExpiredError(TimeoutError):
    """A spawned call's result is older than the retention period."""


class ConnectionError(Error):
    """The control plane can't be reached."""


class ControlPlaneUnavailableError(ConnectionError):
    """The control plane went away mid-call and didn't come back within the retry window
    (SKYLIFT_RETRY_WINDOW, 60 s by default; docs/exactly-once.md)."""


class VersionError(Error):
    """Client and server versions differ in a way they can't bridge."""


class ExecutionError(Error):
    """Something unexpected happened at run time."""


class DeserializationError(Error):
    """A payload can't be deserialized (often a library version mismatch)."""


class SerializationError(Error):
    """An argument or result can't be serialized."""


class RequestSizeError(Error):
    """A request is over the size limit."""


class DeprecationError(UserWarning):
    """Warning category for deprecated features (a UserWarning, so the default filters show it); raised
    for features that were removed."""


class PendingDeprecationError(UserWarning):
    """Warning category for features that will be deprecated."""


class ServerWarning(UserWarning):
    """A warning from the control plane, re-issued in the client."""


class AsyncUsageWarning(UserWarning):
    """A blocking interface was used inside an async context."""


class InternalAPIWarning(UserWarning):
    """User code reached into an internal API."""


class InternalFailure(Error):
    """The platform failed (worker lost, container crashed); the input may be retried."""


class _CliUserExecutionError(Exception):
    """The user's code failed while the CLI imported or ran it (private; never reaches users).

    Not an `Error`: the CLI prints its traceback starting at `user_source`, the user's file."""

    def __init__(self, user_source: str) -> None:
        self.user_source = user_source


def _simulate_preemption_interrupt(signum: int, frame: FrameType | None) -> None:
    signal.alarm(30)  # a second interrupt 30 s later stands for the SIGKILL that follows a preemption
    raise KeyboardInterrupt("Simulated preemption interrupt from skylift")


def simulate_preemption(wait_seconds: int, jitter_seconds: int = 0) -> None:
    """Simulate a preemption: SIGINT (a KeyboardInterrupt) after `wait_seconds` (plus up to
    `jitter_seconds`), and another 30 s later, as Modal's `simulate_preemption` does.

    Examples:
        >>> simulate_preemption(0)
        Traceback (most recent call last):
        ValueError: Time to wait must be greater than 0
    """
    if wait_seconds <= 0:
        raise ValueError("Time to wait must be greater than 0")
    signal.signal(signal.SIGALRM, _simulate_preemption_interrupt)
    jitter = random.randrange(0, jitter_seconds) if jitter_seconds else 0
    signal.alarm(wait_seconds + jitter)


class InputCancellation(BaseException):
    """The current input was cancelled. A BaseException, as in Modal, so that a bare `except Exception`
    used for retries or control flow in user code doesn't swallow it."""


class ModuleNotMountable(Exception):
    """A module's source can't be mounted into the container."""


class ClientClosed(Error):
    """The client was closed."""


class SandboxFilesystemError(Error):
    """Base class for sandbox filesystem errors."""


class SandboxFilesystemNotFoundError(SandboxFilesystemError):
    """A file or directory in the sandbox doesn't exist."""


class SandboxFilesystemDirectoryNotEmptyError(SandboxFilesystemError):
    """A directory in the sandbox is not empty."""


class SandboxFilesystemIsADirectoryError(SandboxFilesystemError):
    """A file operation targets a directory."""


class SandboxFilesystemNotADirectoryError(SandboxFilesystemError):
    """A path component is not a directory."""


class SandboxFilesystemPermissionError(SandboxFilesystemError):
    """Permission denied for a file operation in the sandbox."""


class SandboxFilesystemFileTooLargeError(SandboxFilesystemError):
    """A file is over the size limit for a read."""


class SandboxFilesystemPathAlreadyExistsError(SandboxFilesystemError):
    """A path exists and the operation needs it absent."""


class ImageBuildError(RemoteError):
    """An Image build failed; `image_id` names the failed image (e.g. to fetch its build logs)."""

    def __init__(self, message: str, image_id: str) -> None:
        super().__init__(message)
        self.image_id = image_id

    def __reduce__(self) -> tuple[type[ImageBuildError], tuple[str, str]]:
        return type(self), (str(self), self.image_id)


class _PlatformInternalError(InternalError, ExecutionError):
    """What an `internal` wire error becomes: Modal's InternalError, and ExecutionError as skylift raised
    before."""


class _RequestCancelledError(ServiceError, ExecutionError):
    """What a `cancelled` wire error becomes: Modal's ServiceError, and ExecutionError as before."""


class _CallCancelledError(RemoteError, InputCancellation):
    """What the caller of a cancelled input gets: an Exception, as Modal's caller gets a RemoteError (a
    caller's `except Exception` still catches it), and an InputCancellation, as skylift raised before."""


__all__ = [
    "AlreadyExistsError", "AsyncUsageWarning", "AuthError", "ClientClosed", "ConflictError", "ConnectionError",
    "ControlPlaneUnavailableError", "DataLossError", "DeprecationError", "DeserializationError", "Error",
    "ExecTimeoutError", "ExecutionError", "FunctionTimeoutError", "ImageBuildError", "InputCancellation",
    "InteractiveTimeoutError", "InternalAPIWarning", "InternalError", "InternalFailure", "InvalidError",
    "LogsFetchError", "ModuleNotMountable", "MountUploadTimeoutError", "NotFoundError", "OutputExpiredError",
    "PendingDeprecationError", "PermissionDeniedError", "RemoteError", "RequestSizeError", "ResourceExhaustedError",
    "SandboxFilesystemDirectoryNotEmptyError", "SandboxFilesystemError", "SandboxFilesystemFileTooLargeError",
    "SandboxFilesystemIsADirectoryError", "SandboxFilesystemNotADirectoryError", "SandboxFilesystemNotFoundError",
    "SandboxFilesystemPathAlreadyExistsError", "SandboxFilesystemPermissionError", "SandboxTerminatedError",
    "SandboxTimeoutError", "SerializationError", "ServerWarning", "ServiceError", "SnapshotCreationError",
    "TimeoutError", "UnimplementedError", "VersionError", "VolumeUploadTimeoutError", "WorkspaceManagementError",
    "simulate_preemption",
]
