"""The offsets and bounds of a sandbox's stdio buffers (server/execution/sandboxes.py): re-sends add
nothing, gaps are refused, a full buffer refuses instead of dropping."""

from __future__ import annotations

import pytest

from skylift.server.execution import sandboxes
from skylift.server.execution.sandboxes import OffsetError, Output, Process, Stdin


def test_output_resends_add_nothing_and_reads_free_what_is_behind() -> None:
    out = Output()
    assert out.put(0, b"hello ", False)
    assert out.put(0, b"hello ", False)  # a re-send after a lost answer
    assert out.put(3, b"lo world", False)  # overlapping: only the new part counts
    assert out.read(0) == (0, b"hello world")
    assert out.read(6) == (6, b"world")  # reading at 6 frees the first 6 bytes
    assert out.base == 6
    assert out.read(0) == (6, b"world")  # an old offset gets what is still kept
    with pytest.raises(OffsetError):
        out.put(20, b"gap", False)
    assert out.put(11, b"", True) and out.eof


def test_output_is_bounded_by_refusing_not_dropping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandboxes, "MAX_UNREAD", 8)
    out = Output()
    assert out.put(0, b"12345678", False)
    assert not out.put(8, b"9", False)  # full: the container sends it again later
    assert out.read(4) == (4, b"5678")
    assert out.put(8, b"9", False)
    assert out.read(4) == (4, b"56789")


def test_stdin_is_idempotent_and_acknowledged_by_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandboxes, "MAX_UNREAD", 10)
    stdin = Stdin()
    assert stdin.write(0, b"abc", False)
    assert stdin.write(0, b"abc", False) and stdin.end == 3  # re-sent drain
    assert stdin.pending(0) == (0, b"abc", False)
    assert stdin.pending(3) is None
    stdin.ack(2)
    assert stdin.pending(2) == (2, b"c", False)
    assert stdin.write(3, b"defghijklm", True)
    assert not stdin.write(13, b"more", False)  # full until the container acknowledges
    assert stdin.pending(13) == (13, b"", True)  # EOF is delivered once everything before it was
    with pytest.raises(OffsetError):
        stdin.write(99, b"x", False)


def test_a_result_is_set_once() -> None:
    proc = Process("sb-x", {})
    assert proc.finish(sandboxes.EXITED, 3)
    assert not proc.finish(sandboxes.TERMINATED, None)
    assert (proc.status, proc.returncode, proc.stdout.eof) == (sandboxes.EXITED, 3, True)
    timed = Process("sb-y", {})
    timed.finish(sandboxes.TIMEOUT, None)
    assert timed.returncode == 124


def _ended(sandbox_id: str, unread: int, now: float = 1.0) -> sandboxes.Sandbox:
    sandbox = sandboxes.Sandbox(sandbox_id, "ap-x", "main", None, {}, 0.0, 0.0, 300.0, None, Process(sandbox_id, {}))
    sandbox.main.stdout.data += b"x" * unread
    sandbox.end(sandboxes.EXITED, 0, now=now)
    return sandbox


def test_ended_sandboxes_are_kept_within_count_age_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandboxes, "KEEP_EXITED", 3)
    monkeypatch.setattr(sandboxes, "KEEP_EXITED_BYTES", 100)
    kept = sandboxes.Sandboxes()
    for i in range(5):
        sandbox = _ended(f"sb-{i}", 10)
        kept.add(sandbox)
        kept.ended(sandbox, now=1.0)
    assert [s.sandbox_id for s in kept.all()] == ["sb-2", "sb-3", "sb-4"]  # the newest 3
    big = _ended("sb-big", 95)
    kept.add(big)
    kept.ended(big, now=1.0)
    assert [s.sandbox_id for s in kept.all()] == ["sb-big"]  # the older ones' output went first
    later = 1.0 + sandboxes.KEEP_EXITED_SECONDS + 1
    late = _ended("sb-late", 0, now=later)
    kept.add(late)
    kept.ended(late, now=later)
    assert [s.sandbox_id for s in kept.all()] == ["sb-late"]
