"""`modal.exception` is skylift's: Modal 1.6.4's classes and bases, and what skylift raises is an
instance of Modal's matching class (the full list is checked against the real package by
test_modal_api_diff.py)."""

from __future__ import annotations

import pickle
import warnings

import pytest

import skylift
from skylift import exception as exc
from skylift._client import map_error
from skylift._protocol import api
from skylift._protocol.rpc import ErrorCode, RpcError
from skylift._serialization import exception_from_output


def test_one_root_which_is_modal_error() -> None:
    assert skylift.Error is exc.Error
    for name in ("NotFoundError", "InvalidError", "ConflictError", "InternalError", "ServiceError",
                 "PermissionDeniedError", "ImageBuildError", "SandboxTimeoutError", "ExecTimeoutError",
                 "FunctionTimeoutError", "ControlPlaneUnavailableError", "SandboxFilesystemNotFoundError"):
        assert issubclass(getattr(exc, name), exc.Error), name


def test_modal_bases() -> None:
    assert issubclass(exc.ConflictError, exc.InvalidError)
    assert issubclass(exc.ImageBuildError, exc.RemoteError)
    for name in ("SandboxTimeoutError", "ExecTimeoutError", "FunctionTimeoutError", "OutputExpiredError",
                 "VolumeUploadTimeoutError", "MountUploadTimeoutError", "InteractiveTimeoutError"):
        assert issubclass(getattr(exc, name), exc.TimeoutError), name
    assert issubclass(exc.TimeoutError, TimeoutError)  # also the builtin, as skylift's always was
    assert issubclass(exc.InputCancellation, BaseException) and not issubclass(exc.InputCancellation, Exception)
    for name in ("DeprecationError", "PendingDeprecationError", "ServerWarning", "AsyncUsageWarning",
                 "InternalAPIWarning"):
        assert issubclass(getattr(exc, name), UserWarning), name
    assert not issubclass(exc.ModuleNotMountable, exc.Error) and not issubclass(exc._CliUserExecutionError, exc.Error)


def test_deprecation_error_is_a_warning_category_that_shows_by_default() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.warn("old", exc.DeprecationError, stacklevel=1)
    assert [w.category for w in caught] == [exc.DeprecationError]
    with pytest.raises(exc.DeprecationError, match="fastapi_endpoint"):
        skylift.web_endpoint()  # the name exists, as in Modal; using it raises


def test_image_build_error_keeps_its_image_id_across_pickle() -> None:
    err = pickle.loads(pickle.dumps(exc.ImageBuildError("step 2 failed", "im-123")))
    assert isinstance(err, exc.ImageBuildError) and err.image_id == "im-123" and str(err) == "step 2 failed"


def test_wire_errors_are_modals_class_and_what_skylift_raised_before() -> None:
    internal = map_error(RpcError(ErrorCode.INTERNAL, "boom"))
    assert isinstance(internal, exc.InternalError) and isinstance(internal, exc.ExecutionError)
    cancelled = map_error(RpcError(ErrorCode.CANCELLED, "stop"))
    assert isinstance(cancelled, exc.ServiceError) and isinstance(cancelled, exc.ExecutionError)
    assert type(map_error(RpcError(ErrorCode.NOT_FOUND, "x"))) is exc.NotFoundError


def test_the_caller_of_a_cancelled_input_gets_an_exception_that_is_also_an_input_cancellation() -> None:
    err = exception_from_output({"status": api.STATUS_TERMINATED, "exc_message": ""}, function_name="f")
    assert isinstance(err, Exception) and isinstance(err, exc.RemoteError)  # Modal's caller sees a RemoteError
    assert isinstance(err, exc.InputCancellation) and "cancelled" in str(err)


def test_simulate_preemption_rejects_a_non_positive_wait() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        exc.simulate_preemption(0)
