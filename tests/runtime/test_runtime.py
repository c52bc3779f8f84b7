"""The real container runtime (`python -m skylift._runtime`) against a stand-in control plane."""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cloudpickle
from runtime_peer import Peer, definition

import skylift
from skylift._protocol import api
from skylift._serialization import encode_params

# Functions below travel by value, as with serialized=True: the container can't import this file.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

Scenario = Callable[[Peer], Awaitable[Any]]


def drive(tmp_path: Path, defn: dict[str, Any], scenario: Scenario, *, params: bytes | None = None,
          **env: str) -> Any:
    async def main() -> Any:
        peer = Peer(defn, params)
        await peer.start(tmp_path, **env)
        try:
            return await scenario(peer)
        finally:
            await peer.close()

    return asyncio.run(main())


def value(output: dict[str, Any]) -> Any:
    assert output["status"] == api.STATUS_SUCCESS, output.get("traceback")
    return pickle.loads(output["data"])


async def stop_and_wait(peer: Peer) -> int:
    peer.request_stop()
    return await peer.wait_exit()


# -- functions run in the container ---------------------------------------------------------


def square(x: int) -> int:
    return x * x


async def async_add(a: int, b: int = 10) -> int:
    await asyncio.sleep(0.01)
    return a + b


def fails(message: str) -> None:
    raise ValueError(message)


def count_to(n: int) -> Any:
    for i in range(n):
        yield i * 10


async def async_count_to(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0)
        yield f"item {i}"


def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


async def async_sleepy(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


def whoami() -> dict[str, Any]:
    return {"input_id": skylift.current_input_id(), "is_local": skylift.is_local()}


def batch_double(xs: list[int], scale: list[int]) -> list[int]:
    return [x * s * 2 for x, s in zip(xs, scale, strict=True)] + [len(xs) * 1000]


def batch_wrong_length(xs: list[int]) -> list[int]:
    return xs[:1]


def noop(i: int) -> int:
    return i


def spin(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return "finished"


class Model:
    """A class service: parameters, enter/exit hooks and methods."""

    def __init__(self, path: str, factor: int) -> None:
        self.path = path
        self.factor = factor
        self.log: list[str] = []

    @skylift.enter(snap=True)
    def load(self) -> None:
        self.log.append("enter-snap")

    @skylift.enter()
    async def warm(self) -> None:
        self.log.append("enter")

    @skylift.method()
    def scale(self, x: int) -> int:
        return x * self.factor

    @skylift.method()
    def history(self) -> list[str]:
        return list(self.log)

    @skylift.method()
    def stream(self, n: int) -> Any:
        yield from range(n)

    @skylift.exit()
    def done(self) -> None:
        Path(self.path).write_text(",".join([*self.log, "exit"]))


class BrokenEnter:
    @skylift.enter()
    def load(self) -> None:
        raise RuntimeError("weights not found")

    @skylift.method()
    def run(self) -> None:
        pass


# -- tests ----------------------------------------------------------------------------------


def test_sync_function_returns_values_and_stops_cleanly(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        ids = [peer.add_input(i) for i in range(5)]
        outputs = await peer.wait_outputs(ids)
        assert [value(o) for o in outputs] == [0, 1, 4, 9, 16]
        assert all(o["attempt"] == 1 for o in outputs)
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(square), scenario)


def test_async_function(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        ids = [peer.add_input(1), peer.add_input(2, b=3)]
        assert [value(o) for o in await peer.wait_outputs(ids)] == [11, 5]
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(async_add), scenario)


def test_exception_becomes_failure_output_with_user_traceback(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        [output] = await peer.wait_outputs([peer.add_input("bad input")])
        assert output["status"] == api.STATUS_FAILURE
        assert output["exc_type"] == "builtins.ValueError"
        assert output["exc_message"] == "bad input"
        assert "in fails" in output["traceback"]
        assert "skylift/_runtime" not in output["traceback"]
        exc = pickle.loads(output["data"])
        assert isinstance(exc, ValueError) and str(exc) == "bad input"
        # The container survives a user exception.
        [ok] = await peer.wait_outputs([peer.add_input("x")])
        assert ok["status"] == api.STATUS_FAILURE
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(fails), scenario)


def test_sync_generator_streams_items_then_success(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        input_id = peer.add_input(50)
        [output] = await peer.wait_outputs([input_id])
        assert output["status"] == api.STATUS_SUCCESS
        assert [pickle.loads(i) for i in peer.gen_items[input_id]] == [i * 10 for i in range(50)]
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(count_to, is_generator=True), scenario)


def test_async_generator_streams_items(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        input_id = peer.add_input(3)
        await peer.wait_outputs([input_id])
        assert [pickle.loads(i) for i in peer.gen_items[input_id]] == ["item 0", "item 1", "item 2"]
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(async_count_to, is_generator=True), scenario)


def test_sync_concurrency_runs_inputs_in_parallel(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> float:
        await peer.ready.wait()
        start = time.monotonic()
        ids = [peer.add_input(0.2) for _ in range(10)]
        await peer.wait_outputs(ids)
        elapsed = time.monotonic() - start
        assert await stop_and_wait(peer) == 0
        return elapsed

    elapsed = drive(tmp_path, definition(sleepy, concurrency={"max_inputs": 10, "target_inputs": None}), scenario)
    assert elapsed < 1.5, f"10 x 0.2 s with max_inputs=10 took {elapsed:.2f} s"


def test_async_concurrency_runs_inputs_in_parallel(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> float:
        await peer.ready.wait()
        start = time.monotonic()
        ids = [peer.add_input(0.2) for _ in range(10)]
        await peer.wait_outputs(ids)
        elapsed = time.monotonic() - start
        assert await stop_and_wait(peer) == 0
        return elapsed

    elapsed = drive(tmp_path, definition(async_sleepy, concurrency={"max_inputs": 10, "target_inputs": 5}),
                    scenario)
    assert elapsed < 1.5, f"10 x 0.2 s with max_inputs=10 took {elapsed:.2f} s"


def test_without_concurrency_inputs_run_one_at_a_time(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> float:
        await peer.ready.wait()
        start = time.monotonic()
        await peer.wait_outputs([peer.add_input(0.2) for _ in range(3)])
        elapsed = time.monotonic() - start
        assert await stop_and_wait(peer) == 0
        return elapsed

    assert drive(tmp_path, definition(sleepy), scenario) >= 0.6


def test_batching_calls_once_with_lists_and_splits_results(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        ids = [peer.add_input(i, scale=1) for i in range(4)]
        outputs = await peer.wait_outputs(ids)
        # The function returned one extra item: a batch/result length mismatch fails every input.
        assert all(o["status"] == api.STATUS_FAILURE for o in outputs)
        assert "received 4 inputs and returned a list of 5" in outputs[0]["exc_message"]
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(batch_double, batching={"max_batch_size": 4, "wait_ms": 2000}), scenario)


def test_batching_forms_batches_by_size_and_wait(tmp_path: Path) -> None:
    def identity_batch(xs: list[int]) -> list[tuple[int, int]]:
        return [(x, len(xs)) for x in xs]

    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        full = [peer.add_input(i) for i in range(4)]
        assert [value(o) for o in await peer.wait_outputs(full)] == [(i, 4) for i in range(4)]
        # Fewer than max_batch_size: the batch goes once wait_ms has passed.
        start = time.monotonic()
        partial = [peer.add_input(10), peer.add_input(11)]
        assert [value(o) for o in await peer.wait_outputs(partial)] == [(10, 2), (11, 2)]
        assert time.monotonic() - start >= 0.25
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(identity_batch, batching={"max_batch_size": 4, "wait_ms": 300}), scenario)


def test_batching_mismatched_result_fails_each_input(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        outputs = await peer.wait_outputs([peer.add_input(1), peer.add_input(2)])
        assert [o["status"] for o in outputs] == [api.STATUS_FAILURE] * 2
        assert "must return a list with one output per input" in outputs[0]["exc_message"]
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(batch_wrong_length, batching={"max_batch_size": 2, "wait_ms": 1000}), scenario)


def test_class_with_parameters_hooks_and_methods(tmp_path: Path) -> None:
    exit_file = tmp_path / "exit.txt"

    async def scenario(peer: Peer) -> None:
        scaled = peer.add_input(7, method="scale")
        history = peer.add_input(method="history")
        stream = peer.add_input(3, method="stream")
        missing = peer.add_input(method="nope")
        outputs = await peer.wait_outputs([scaled, history, stream, missing])
        assert value(outputs[0]) == 21
        assert value(outputs[1]) == ["enter-snap", "enter"]
        assert outputs[2]["status"] == api.STATUS_SUCCESS
        assert [pickle.loads(i) for i in peer.gen_items[stream]] == [0, 1, 2]
        assert outputs[3]["status"] == api.STATUS_FAILURE and "no method 'nope'" in outputs[3]["exc_message"]
        assert await stop_and_wait(peer) == 0

    defn = definition(Model, methods={"scale": {"is_generator": False}, "history": {"is_generator": False},
                                      "stream": {"is_generator": True}})
    drive(tmp_path, defn, scenario, params=encode_params({"path": str(exit_file), "factor": 3}))
    assert exit_file.read_text() == "enter-snap,enter,exit"


def test_enter_failure_is_reported_and_exits_nonzero(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        code = await peer.wait_exit()
        assert code == 1
        assert peer.init_failed is not None
        assert peer.init_failed["error"] == "RuntimeError: weights not found"
        assert "in load" in peer.init_failed["traceback"]
        assert "weights not found" in await peer.text()  # also in the container's log
        assert not peer.ready.is_set()

    drive(tmp_path, definition(BrokenEnter), scenario)


def test_import_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken_module.py").write_text("import not_a_real_module_xyz\n")

    async def scenario(peer: Peer) -> None:
        assert await peer.wait_exit() == 1
        assert peer.init_failed is not None
        assert "ModuleNotFoundError" in peer.init_failed["error"]

    drive(tmp_path, definition(None, module="broken_module", qualname="f"), scenario)


def test_module_function_imported_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "user_app.py").write_text("def triple(x):\n    return 3 * x\n")

    async def scenario(peer: Peer) -> None:
        assert value((await peer.wait_outputs([peer.add_input(5)]))[0]) == 15
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(None, module="user_app", qualname="triple"), scenario)


def test_sdk_app_function_and_class_from_a_module(tmp_path: Path) -> None:
    (tmp_path / "sdk_app.py").write_text(
        "import skylift as modal\n"
        "app = modal.App('t')\n"
        "@app.function()\n"
        "def hello(name):\n"
        "    return f'hello {name}'\n"
        "@app.cls()\n"
        "class Greeter:\n"
        "    greeting: str = modal.parameter(default='hi')\n"
        "    @modal.enter()\n"
        "    def setup(self):\n"
        "        self.suffix = '!'\n"
        "    @modal.method()\n"
        "    def greet(self, name):\n"
        "        return f'{self.greeting} {name}{self.suffix}'\n")

    async def function_scenario(peer: Peer) -> None:
        assert value((await peer.wait_outputs([peer.add_input("ada")]))[0]) == "hello ada"
        assert await stop_and_wait(peer) == 0

    async def class_scenario(peer: Peer) -> None:
        assert value((await peer.wait_outputs([peer.add_input("bob", method="greet")]))[0]) == "hey bob!"
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(None, module="sdk_app", qualname="hello"), function_scenario)
    drive(tmp_path, definition(None, module="sdk_app", qualname="Greeter", is_class=True,
                               methods={"greet": {"is_generator": False}}),
          class_scenario, params=encode_params({"greeting": "hey"}))


def test_current_input_id_and_is_local_inside_the_container(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        ids = [peer.add_input(), peer.add_input()]
        outputs = await peer.wait_outputs(ids)
        assert [value(o) for o in outputs] == [{"input_id": i, "is_local": False} for i in ids]
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(whoami), scenario)


def test_many_quick_inputs_prefetch_and_batch_outputs(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        ids = [peer.add_input(i) for i in range(300)]
        outputs = await peer.wait_outputs(ids)
        assert [value(o) for o in outputs] == list(range(300))
        polls = [c for c in peer.calls if c[1] == "container.get_inputs"]
        assert len(polls) < 300  # prefetching takes several inputs per round trip
        assert len(peer.output_batches) < 300  # outputs finished during a send go together
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(noop), scenario)


def test_cancel_async_input(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        slow = peer.add_input(30)
        while not any(slow in beat for beat in peer.heartbeats):
            await asyncio.sleep(0.05)
        peer.cancel_ids = [slow]
        [output] = await peer.wait_outputs([slow], timeout=10)
        assert output["status"] == api.STATUS_TERMINATED
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(async_sleepy), scenario, SKYLIFT_HEARTBEAT_INTERVAL="0.1")


def test_cancel_sync_input_interrupts_python_code(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        busy = peer.add_input(30)
        while not any(busy in beat for beat in peer.heartbeats):
            await asyncio.sleep(0.05)
        peer.cancel_ids = [busy]
        [output] = await peer.wait_outputs([busy], timeout=10)
        assert output["status"] == api.STATUS_TERMINATED
        # The container goes on serving.
        assert value((await peer.wait_outputs([peer.add_input(0)]))[0]) == "finished"
        assert await stop_and_wait(peer) == 0

    drive(tmp_path, definition(spin), scenario, SKYLIFT_HEARTBEAT_INTERVAL="0.1")


def test_cancel_sync_input_blocked_in_c_exits_the_container(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        stuck = peer.add_input(60)
        while not any(stuck in beat for beat in peer.heartbeats):
            await asyncio.sleep(0.05)
        peer.cancel_ids = [stuck]
        [output] = await peer.wait_outputs([stuck], timeout=10)
        assert output["status"] == api.STATUS_TERMINATED
        assert await peer.wait_exit(timeout=10) == 1
        assert "did not stop" in await peer.text()

    drive(tmp_path, definition(sleepy), scenario, SKYLIFT_HEARTBEAT_INTERVAL="0.1")


def test_sigterm_finishes_running_inputs_then_runs_exit_hooks(tmp_path: Path) -> None:
    exit_file = tmp_path / "exit.txt"

    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        running = peer.add_input(7, method="scale")
        await peer.wait_outputs([running])
        assert peer.process is not None
        peer.process.terminate()
        assert await peer.wait_exit() == 0

    drive(tmp_path, definition(Model), scenario, params=encode_params({"path": str(exit_file), "factor": 2}))
    assert exit_file.read_text() == "enter-snap,enter,exit"


def test_sigterm_waits_for_the_running_input(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        await peer.ready.wait()
        running = peer.add_input(0.5)
        while not any(c[1] == "container.get_inputs" and c[2]["max"] for c in peer.calls[2:]):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert peer.process is not None
        peer.process.terminate()
        assert await peer.wait_exit() == 0
        assert value(peer.outputs[running]) == 0.5

    drive(tmp_path, definition(sleepy), scenario)


def test_single_use_container_exits_after_one_input(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        first, second = peer.add_input(2), peer.add_input(3)
        assert value((await peer.wait_outputs([first]))[0]) == 4
        assert await peer.wait_exit() == 0
        assert second not in peer.outputs

    drive(tmp_path, definition(square, single_use_containers=True), scenario)


def test_bad_token_exits_with_code_2(tmp_path: Path) -> None:
    async def scenario(peer: Peer) -> None:
        assert await peer.wait_exit() == 2
        assert "auth" in await peer.text()

    drive(tmp_path, definition(square), scenario, SKYLIFT_TASK_TOKEN="wrong")
