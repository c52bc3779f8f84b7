"""Placement: which worker runs a new container (a pure choice)."""

from __future__ import annotations

import pytest

from skylift.server.policy.placement import (
    GpuOption,
    IdleContainer,
    Placed,
    Request,
    Unplaceable,
    WorkerView,
    choose_evictions,
    parse_gpu,
    place,
)


def worker(worker_id: str, cpu: float = 4, memory_mb: int = 8192, gpus: dict[str, int] | None = None,
           **used: object) -> WorkerView:
    return WorkerView(worker_id, cpu, memory_mb, gpus or {}, **used)  # type: ignore[arg-type]


@pytest.mark.parametrize(("spec", "expected"), [
    (None, ()),
    ("", ()),
    ("A100", (GpuOption("A100"),)),
    ("a100-80gb:2", (GpuOption("A100-80GB", 2),)),
    ("H100!", (GpuOption("H100!"),)),
    ({"type": "H100", "count": 2, "fallbacks": [{"type": "A100", "count": 1}]},
     (GpuOption("H100", 2), GpuOption("A100"))),
    ("any", (GpuOption("ANY"),)),
    (["H100", "A100:2"], (GpuOption("H100"), GpuOption("A100", 2))),
])
def test_parse_gpu(spec: object, expected: tuple[GpuOption, ...]) -> None:
    assert parse_gpu(spec) == expected


@pytest.mark.parametrize("spec", ["A100:x", ":2", "A100:0", 3, ["ok", None], {"type": "T4", "count": 0},
                                  {"count": 1}, {"type": "T4", "fallbacks": "A100"}])
def test_parse_gpu_rejects(spec: object) -> None:
    with pytest.raises(ValueError):
        parse_gpu(spec)


def test_no_workers_is_not_permanent() -> None:
    decision = place(Request(), [])
    assert isinstance(decision, Unplaceable) and not decision.permanent


def test_least_loaded_worker_wins() -> None:
    workers = [worker("busy", used_cpu=3.0), worker("free"), worker("half", used_cpu=2.0)]
    decision = place(Request(cpu=1), workers)
    assert isinstance(decision, Placed) and decision.worker_id == "free"


def test_ties_break_on_task_count_then_id() -> None:
    assert place(Request(), [worker("b", n_tasks=1), worker("c"), worker("a", n_tasks=1)]) == \
        Placed("c", 0.125, 128)
    assert place(Request(), [worker("b"), worker("a")]) == Placed("a", 0.125, 128)


def test_full_workers_are_skipped_and_all_full_waits() -> None:
    workers = [worker("full", cpu=2, used_cpu=2.0), worker("room", cpu=2, used_cpu=1.0)]
    assert place(Request(cpu=1), workers) == Placed("room", 1, 128)
    decision = place(Request(cpu=1.5), workers)
    assert isinstance(decision, Unplaceable) and not decision.permanent


def test_memory_is_respected() -> None:
    workers = [worker("small", memory_mb=1024), worker("big", memory_mb=65536, used_cpu=3.5)]
    decision = place(Request(cpu=0.1, memory_mb=4096), workers)
    assert isinstance(decision, Placed) and decision.worker_id == "big"


def test_requests_larger_than_a_machine_are_clamped_to_it() -> None:
    decision = place(Request(cpu=16, memory_mb=10**6), [worker("laptop", cpu=4, memory_mb=8192)])
    assert decision == Placed("laptop", 4, 8192)
    busy = place(Request(cpu=16), [worker("laptop", cpu=4, used_cpu=0.5)])
    assert isinstance(busy, Unplaceable) and not busy.permanent


def test_gpu_requests_go_only_to_workers_with_that_gpu() -> None:
    workers = [worker("cpu-only"), worker("t4", gpus={"T4": 1}), worker("a100", gpus={"A100-80GB": 2})]
    assert place(Request(gpus=parse_gpu("A100")), workers) == Placed("a100", 0.125, 128, "A100-80GB", 1)
    assert place(Request(gpus=parse_gpu("any")), workers).worker_id in ("t4", "a100")  # type: ignore[union-attr]
    assert place(Request(gpus=parse_gpu("A100:2")), workers) == Placed("a100", 0.125, 128, "A100-80GB", 2)


def test_gpu_nobody_offers_fails_permanently_with_a_clear_reason() -> None:
    decision = place(Request(gpus=parse_gpu("A100")), [worker("cpu-only"), worker("t4", gpus={"T4": 1})])
    assert isinstance(decision, Unplaceable) and decision.permanent
    assert decision.reason.startswith("no worker offers GPU 'A100'; connected workers offer: T4")


def test_gpu_count_beyond_any_worker_is_permanent() -> None:
    decision = place(Request(gpus=parse_gpu("T4:4")), [worker("t4", gpus={"T4": 2})])
    assert isinstance(decision, Unplaceable) and decision.permanent


def test_gpus_in_use_make_it_wait() -> None:
    decision = place(Request(gpus=parse_gpu("T4")), [worker("t4", gpus={"T4": 1}, used_gpus={"T4": 1})])
    assert isinstance(decision, Unplaceable) and not decision.permanent


def test_gpu_upgrades_follow_modal() -> None:
    h200 = [worker("h200", gpus={"H200": 1})]
    assert isinstance(place(Request(gpus=parse_gpu("H100")), h200), Placed)
    pinned = place(Request(gpus=parse_gpu("H100!")), h200)
    assert isinstance(pinned, Unplaceable) and pinned.permanent
    assert isinstance(place(Request(gpus=parse_gpu("H100!")), [worker("h100", gpus={"H100": 1})]), Placed)


def test_gpu_fallback_list_takes_the_first_available() -> None:
    workers = [worker("h", gpus={"H100": 1}, used_gpus={"H100": 1}), worker("a", gpus={"A100": 1})]
    assert place(Request(gpus=parse_gpu(["H100", "A100"])), workers) == Placed("a", 0.125, 128, "A100", 1)


def test_evictions_pick_the_fewest_longest_idle_containers() -> None:
    workers = [worker("w1", cpu=1, used_cpu=1.0), worker("w2", cpu=1, used_cpu=1.0)]
    idle = [IdleContainer("w1-old", "w1", 0.25, 128, idle_since=1), IdleContainer("w1-new", "w1", 0.25, 128,
                                                                                   idle_since=9),
            IdleContainer("w2-big", "w2", 0.5, 128, idle_since=5)]
    assert choose_evictions(Request(cpu=0.5), workers, idle) == ("w2-big",)
    assert choose_evictions(Request(cpu=0.25), workers, idle) == ("w1-old",)


def test_no_eviction_when_freeing_idle_containers_would_not_be_enough() -> None:
    workers = [worker("w1", cpu=1, used_cpu=1.0)]
    assert choose_evictions(Request(cpu=0.5), workers, [IdleContainer("small", "w1", 0.25, 128)]) == ()
    gpu_worker = [worker("g", gpus={"T4": 1}, used_gpus={"T4": 1})]
    holds_gpu = IdleContainer("t4", "g", 0.125, 128, "T4", 1)
    assert choose_evictions(Request(gpus=parse_gpu("T4")), gpu_worker, [holds_gpu]) == ("t4",)
    assert choose_evictions(Request(gpus=parse_gpu("T4")), gpu_worker, []) == ()
