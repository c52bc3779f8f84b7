"""Payloads, remote exceptions and version-mismatch messages."""

from __future__ import annotations

import pickle
import socket

import pytest

from skylift import _serialization as ser
from skylift._protocol import api, framing
from skylift.exception import DeserializationError, RemoteError, RequestSizeError, SerializationError


def test_round_trip_and_fast_path() -> None:
    data = ser.serialize(((1, "a"), {"k": [1.5]}))
    assert ser.deserialize(data) == ((1, "a"), {"k": [1.5]})


def test_lambdas_and_main_objects_use_cloudpickle() -> None:
    f = ser.deserialize(ser.serialize(lambda x: x + 1))
    assert f(1) == 2


def test_unpicklable_and_oversized_are_clear() -> None:
    import threading

    with pytest.raises(SerializationError, match="arguments of f"):
        ser.serialize_args((threading.Lock(),), {}, function_name="f")
    with pytest.raises(RequestSizeError, match="Volume"):
        ser.serialize(b"x" * (api.MAX_PAYLOAD_BYTES + 1))


def test_remote_exception_rebuilt_with_traceback() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        output = ser.failure_output(exc)
    rebuilt = ser.exception_from_output(output, function_name="f")
    assert isinstance(rebuilt, KeyError)
    assert "Remote traceback" in "".join(rebuilt.__notes__)


def test_exception_without_data_becomes_remote_error() -> None:
    output = {"status": api.STATUS_FAILURE, "exc_type": "mymod.Boom", "exc_message": "x", "traceback": "tb"}
    err = ser.exception_from_output(output, function_name="f")
    assert isinstance(err, RemoteError) and "mymod.Boom" in str(err)


def test_version_mismatch_names_both_versions() -> None:
    local = ser.library_versions()
    remote = {"python": "3.99.0", "cloudpickle": local["cloudpickle"]}
    with pytest.raises(DeserializationError, match=rf"python 3.99.0 remotely vs {local['python']} locally"):
        ser.deserialize(b"not a pickle", what="result of f", remote_versions=remote)
    # the container failed to unpickle our arguments: same message, from its output
    exc = DeserializationError("could not unpickle the arguments: ...")
    output = {**ser.failure_output(exc), "library_versions": remote}
    err = ser.exception_from_output(output, function_name="f")
    assert isinstance(err, DeserializationError) and "3.99.0 remotely" in str(err)


def test_params_encoding_is_deterministic_and_typed() -> None:
    assert ser.encode_params({"b": 1, "a": "x"}) == ser.encode_params({"a": "x", "b": 1})
    assert ser.decode_params(ser.encode_params({"a": b"\x00"})) == {"a": b"\x00"}
    with pytest.raises(SerializationError, match=r"modal\.parameter"):
        ser.encode_params({"a": 1.5})


def test_frames_reject_garbage() -> None:
    with pytest.raises(framing.FrameError):
        framing.decode(b"\xc1\xc1")
    with pytest.raises(framing.FrameError):
        framing.decode(pickle.dumps([1]))


def test_malformed_bytes_on_the_wire_do_not_wedge_the_platform(platform) -> None:  # type: ignore[no-untyped-def]
    from skylift._local_server import read_info
    from skylift._protocol.rpc import Address

    info = read_info(platform.home)
    assert info is not None
    addr = Address.parse(info.url)
    with socket.create_connection((addr.host, addr.port), timeout=5) as sock:
        sock.sendall(b"\x00\x00\x00\x05garbage-and-more")
        reply = sock.recv(65536)
        assert b"malformed" in reply or reply == b""
    with socket.create_connection((addr.host, addr.port), timeout=5) as sock:
        sock.sendall(framing.encode({"i": 1, "m": "app.list", "p": {}}))
        assert b"hello" in sock.recv(65536)  # unauthenticated: told to say hello first
    # and the platform still serves real clients
    from skylift._client import Client, run_sync

    assert "apps" in run_sync(Client.from_env().call("app.list", {"environment": "main"}))
