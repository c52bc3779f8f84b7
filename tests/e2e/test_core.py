"""The core API end to end against the real control plane and worker (see skylift.testing)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from apps import core

import skylift as modal
from skylift.exception import (
    ExecutionError,
    FunctionTimeoutError,
    InvalidError,
    RemoteError,
    RequestSizeError,
    SerializationError,
)


@pytest.fixture(scope="module", autouse=True)
def running(platform: object) -> Iterator[None]:
    with core.app.run():
        yield


def test_remote_and_local() -> None:
    assert core.square.remote(7) == 49
    assert core.square.local(7) == 49
    assert core.add.remote(1, b=2) == 3


def test_async_function_and_aio() -> None:
    assert core.async_square.remote(3) == 9

    async def go() -> list[int]:
        return list(await asyncio.gather(*(core.square.remote.aio(i) for i in range(5))))

    assert asyncio.run(go()) == [0, 1, 4, 9, 16]


def test_map_variants() -> None:
    assert list(core.square.map(range(50))) == [i * i for i in range(50)]
    assert sorted(core.square.map(range(20), order_outputs=False)) == sorted(i * i for i in range(20))
    assert list(core.add.starmap([(1, 2), (3, 4)])) == [3, 7]
    assert list(core.add.map([1, 2], kwargs={"b": 10})) == [11, 12]
    results = list(core.fail_on_odd.map(range(4), return_exceptions=True))
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and "odd 1" in str(results[1])
    with pytest.raises(ValueError, match="odd"):
        list(core.fail_on_odd.map(range(4)))
    core.square.for_each(range(5))
    assert list(core.square.map([])) == []


def test_map_aio() -> None:
    async def go() -> list[int]:
        return [x async for x in core.square.map.aio(range(10))]

    assert asyncio.run(go()) == [i * i for i in range(10)]


def test_remote_exception_keeps_type_and_traceback() -> None:
    with pytest.raises(core.CustomError, match="boom") as info:
        core.fail.remote("boom")
    assert "Remote traceback" in "".join(getattr(info.value, "__notes__", []))
    assert 'raise CustomError(message)' in info.value.__skylift_remote_traceback__  # type: ignore[attr-defined]


def test_unpicklable_exception_becomes_remote_error_with_text() -> None:
    with pytest.raises(RemoteError, match="UnpicklableError") as info:
        core.fail_unpicklable.remote()
    assert "cannot travel" in str(info.value)


def test_generators() -> None:
    assert list(core.gen.remote_gen(4)) == [0, 10, 20, 30]
    assert list(core.agen.remote_gen(3)) == ["item-0", "item-1", "item-2"]
    with pytest.raises(InvalidError, match="remote_gen"):
        core.gen.remote(3)
    with pytest.raises(InvalidError, match="not a generator"):
        list(core.square.remote_gen(3))


def test_spawn_and_function_call() -> None:
    call = core.slow.spawn(0.2)
    assert call.object_id.startswith("fc-")
    with pytest.raises(TimeoutError):
        call.get(timeout=0)
    assert modal.FunctionCall.from_id(call.object_id).get(timeout=30) == 0.2
    assert call.get() == 0.2  # results are kept, not cleared by the first get
    calls = [core.square.spawn(i) for i in range(3)]
    assert modal.FunctionCall.gather(*calls) == [0, 1, 4]


def test_cancel_a_spawned_call() -> None:
    call = core.slow.spawn(30)
    time.sleep(0.3)
    call.cancel()
    with pytest.raises(Exception) as info:
        call.get(timeout=20)
    assert "cancel" in str(info.value).lower() or type(info.value).__name__ == "InputCancellation"


def test_spawn_map_runs_everything() -> None:
    keys = [f"spawned-{uuid.uuid4().hex}" for _ in range(3)]
    core.flaky.spawn_map(keys, [1, 1, 1])
    deadline = time.time() + 30
    while time.time() < deadline and not all(core.attempts.get(k) for k in keys):
        time.sleep(0.05)
    assert [core.attempts.get(k) for k in keys] == [1, 1, 1]


def test_retries_with_backoff() -> None:
    assert core.flaky.remote(f"retried-{uuid.uuid4().hex}", 3) == 3
    with pytest.raises(RuntimeError, match="attempt 4 fails"):
        core.flaky.remote(f"retried-{uuid.uuid4().hex}", 10)


def test_timeout_kills_the_attempt() -> None:
    start = time.monotonic()
    with pytest.raises(FunctionTimeoutError):
        core.sleepy.remote(30)
    assert time.monotonic() - start < 20
    assert core.sleepy.remote(0) == "woke"  # the pool recovers


def test_concurrency_runs_inputs_together() -> None:
    start = time.monotonic()
    ids = list(core.concurrent_sleep.map([0.5] * 10))
    elapsed = time.monotonic() - start
    assert len(set(ids)) == 10 and all(i.startswith("in-") for i in ids)
    assert elapsed < 4.5  # one container, ten at once: far from 10 × 0.5 s


def test_batching_groups_inputs() -> None:
    out = list(core.batch_double.map(range(8)))
    assert [x % 1000 for x in out] == [i * 2 for i in range(8)]
    assert max(x // 1000 for x in out) > 1  # some calls got a batch of several inputs


def test_runtime_context_inside_the_container() -> None:
    info = core.where_am_i.remote()
    assert info["is_local"] is False
    assert str(info["input_id"]).startswith("in-")


def test_functions_call_other_functions() -> None:
    assert core.call_square_inside.remote(4) == 17


def test_cls_lifecycle_and_parameters() -> None:
    a = core.Counter(start=10, label="a")
    assert a.incr.remote() == 11
    assert a.incr.remote(5) == 16  # same container: state kept between calls
    b = core.Counter(start=100, label="b")
    assert b.incr.remote() == 101  # another parameter set is another pool
    assert a.info.remote()[0] == "a" and b.info.remote()[0] == "b"
    assert a.info.remote()[1] != b.info.remote()[1]
    assert list(a.countdown.remote_gen(3)) == [3, 2, 1]
    assert core.Counter().incr.local(2) == 2


def test_bad_arguments_are_clear_errors() -> None:
    import threading

    with pytest.raises(SerializationError, match="square"):
        core.square.remote(threading.Lock())
    with pytest.raises(RequestSizeError, match="MiB"):
        core.echo.remote(b"x" * (101 * 1024 * 1024))
    assert core.echo.remote(b"x" * (3 * 1024 * 1024)) == 3 * 1024 * 1024


def test_with_options_is_its_own_pool() -> None:
    bigger = core.square.with_options(cpu=0.5, timeout=30)
    assert bigger.remote(5) == 25
    assert bigger.object_id != core.square.object_id


def test_stats_and_autoscaler_updates() -> None:
    core.square.remote(1)
    stats = core.square.get_current_stats()
    assert stats.num_total_runners >= 1
    core.square.update_autoscaler(max_containers=2)
    assert core.square.remote(2) == 4


def test_container_that_crashes_on_import(platform: object) -> None:
    from apps import broken

    with broken.app.run(), pytest.raises(ExecutionError, match="refuses to import"):
        broken.never.remote()


def test_gpu_without_gpu_worker_fails_fast(platform: object) -> None:
    from apps import gpu

    start = time.monotonic()
    with gpu.app.run(), pytest.raises(Exception, match="A100"):
        gpu.on_gpu.remote()
    assert time.monotonic() - start < 10
