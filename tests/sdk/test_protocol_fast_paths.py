"""The blocking client's reads (answers in one recv, several frames per read, big frames in
pieces) and batched input ids."""

from __future__ import annotations

import socket
import threading
from typing import Any

from skylift._protocol import framing, ids
from skylift._protocol.rpc import BlockingRpcClient


def _serve(server: socket.socket, answers: list[list[bytes]]) -> None:
    """Answer each request with the given chunks (sent as separate writes)."""
    conn, _ = server.accept()
    with conn:
        for chunks in answers:
            header = conn.recv(4, socket.MSG_WAITALL)
            (length,) = framing._HEADER.unpack(header)
            conn.recv(length, socket.MSG_WAITALL)
            for chunk in chunks:
                conn.sendall(chunk)


def _client(answers: list[list[bytes]]) -> tuple[BlockingRpcClient, threading.Thread]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    thread = threading.Thread(target=_serve, args=(server, answers), daemon=True)
    thread.start()
    client = BlockingRpcClient(f"tcp://127.0.0.1:{server.getsockname()[1]}", {"token": "t"}, timeout=10)
    server.close()
    return client, thread


def _frame(i: int, result: Any) -> bytes:
    return framing.encode({"i": i, "r": result})


def test_frames_split_and_joined_arrive_whole() -> None:
    big = b"x" * (3 << 20)  # several recvs
    stale = _frame(99, "an answer to nothing")  # skipped: not this request's id
    second = _frame(2, {"n": 2})
    third = _frame(3, big)
    answers = [
        [_frame(1, {"hello": True})],
        [stale + second[:3], second[3:]],  # two frames in one write, the second split in its header
        [third[:10], third[10:1000], third[1000:]],
    ]
    client, thread = _client(answers)
    assert client.hello == {"hello": True}
    assert client.call("a") == {"n": 2}
    assert client.call("b") == big
    client.close()
    thread.join(5)


def test_new_ids_are_distinct_and_shaped_like_new_id() -> None:
    batch = ids.new_ids("input", 1000)
    assert len(set(batch)) == 1000
    single = ids.new_id("input")
    assert all(len(i) == len(single) and i.startswith("in-") for i in batch)
    assert ids.new_ids("input", 0) == []
