"""The classification of container ends and the crash-loop verdicts (server/policy/faults.py): pure, exhaustive."""

from __future__ import annotations

import itertools
import signal

import pytest

from skylift.server.policy import faults
from skylift.server.policy.faults import CrashState, FaultKind, classify_exit, crash_verdict

CAUSES = ("", faults.CAUSE_OOM, faults.CAUSE_STOPPED, faults.CAUSE_WORKER_STOPPING, faults.CAUSE_START_ERROR,
          faults.CAUSE_IMAGE, faults.CAUSE_WORKER_LOST, "something-new")
EXIT_CODES = (None, 0, 1, 2, 127, 128 + signal.SIGKILL, 128 + signal.SIGTERM, 128 + signal.SIGSEGV,
              128 + signal.SIGABRT, 128 + signal.SIGINT, 128 + signal.SIGHUP, 255)
SIGNALS = (None, signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV, signal.SIGBUS, signal.SIGUSR1)


def expected(exit_code: int | None, signal_number: int | None, cause: str, stop_requested: bool,
             init_failed: bool) -> FaultKind:
    """The table of docs/faults.md, written out independently of the implementation's order."""
    if init_failed or cause in (faults.CAUSE_OOM,):
        return FaultKind.USER
    if stop_requested or cause == faults.CAUSE_STOPPED:
        return FaultKind.PLATFORM_STOP
    if cause in (faults.CAUSE_WORKER_LOST, faults.CAUSE_WORKER_STOPPING, faults.CAUSE_START_ERROR):
        return FaultKind.INFRA
    if cause == faults.CAUSE_IMAGE:
        return FaultKind.USER
    if exit_code is None:
        return FaultKind.INFRA
    sig = signal_number if signal_number is not None else (exit_code - 128 if exit_code > 128 else None)
    if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        return FaultKind.OUTSIDE_KILL
    return FaultKind.USER


@pytest.mark.parametrize("stop_requested,init_failed", list(itertools.product((False, True), repeat=2)))
def test_every_combination_is_classified_as_the_table_says(stop_requested: bool, init_failed: bool) -> None:
    for exit_code, signal_number, cause in itertools.product(EXIT_CODES, SIGNALS, CAUSES):
        fault = classify_exit(exit_code=exit_code, signal_number=signal_number, cause=cause,
                              stop_requested=stop_requested, init_failed=init_failed)
        want = expected(exit_code, signal_number, cause, stop_requested, init_failed)
        assert fault.kind is want, (exit_code, signal_number, cause, stop_requested, init_failed, fault)
        assert fault.reason
        assert fault.platform == (want is not FaultKind.USER)
        assert fault.start_error == (want is FaultKind.INFRA and not stop_requested and not init_failed and (
            cause == faults.CAUSE_START_ERROR or (exit_code is None and cause not in (
                faults.CAUSE_WORKER_LOST, faults.CAUSE_WORKER_STOPPING))))


def test_the_common_cases_read_as_people_expect() -> None:
    kill = classify_exit(exit_code=137)
    assert kill.kind is FaultKind.OUTSIDE_KILL and "SIGKILL" in kill.reason
    assert classify_exit(exit_code=137, stop_requested=True).kind is FaultKind.PLATFORM_STOP
    assert classify_exit(exit_code=137, cause="oom").kind is FaultKind.USER
    assert classify_exit(exit_code=139).kind is FaultKind.USER and "SIGSEGV" in classify_exit(exit_code=139).reason
    assert classify_exit(exit_code=1).kind is FaultKind.USER
    assert classify_exit(exit_code=None, cause="worker_lost").kind is FaultKind.INFRA
    # The worker's explicit signal wins over a guess from the exit code (a user's sys.exit(137)).
    assert classify_exit(exit_code=137, signal_number=None).kind is FaultKind.OUTSIDE_KILL
    assert classify_exit(exit_code=1, signal_number=signal.SIGKILL).kind is FaultKind.OUTSIDE_KILL


LIMITS = {"user_limit": 3, "platform_limit": 8, "backoff_max": 60.0}


def test_user_crashes_count_back_off_and_give_up_at_the_limit() -> None:
    state = CrashState()
    fault = classify_exit(exit_code=1)
    backoffs = []
    for n in range(1, 5):
        verdict = crash_verdict(fault, state, now=0.0, **LIMITS)
        assert verdict is not None
        state = verdict.state
        backoffs.append(verdict.backoff)
        assert state.streak == n and verdict.give_up == (n >= 3)
    assert backoffs == [0.5, 1.0, 2.0, 4.0]


def test_platform_stops_change_nothing() -> None:
    assert crash_verdict(classify_exit(exit_code=137, stop_requested=True), CrashState(3, 2, 5.0),
                         now=6.0, **LIMITS) is None


@pytest.mark.parametrize("exit_code,cause", [(137, ""), (143, ""), (None, "worker_lost"), (None, "worker_stopping")])
def test_outside_kills_and_lost_workers_never_give_up_and_a_burst_counts_once(exit_code: int | None,
                                                                               cause: str) -> None:
    fault = classify_exit(exit_code=exit_code, cause=cause)
    state = CrashState(streak=2)
    first = crash_verdict(fault, state, now=100.0, **LIMITS)
    assert first is not None and first.backoff == 0.0 and first.state.platform_streak == 1
    state = first.state
    for n in range(10):  # several starts killed at once
        verdict = crash_verdict(fault, state, now=100.0 + n * 0.05, **LIMITS)
        assert verdict is not None and verdict.backoff == 0.0 and not verdict.give_up
        assert verdict.state == state
    for n in range(2, 40):  # a killer that keeps at it: backoff grows, the pool never fails
        verdict = crash_verdict(fault, state, now=100.0 + n * 100, **LIMITS)
        assert verdict is not None and not verdict.give_up
        state = verdict.state
        assert state.platform_streak == n and state.streak == 2  # the user streak is untouched
        assert 0 < verdict.backoff <= 60.0


def test_start_errors_back_off_from_the_first_and_give_up_after_the_platform_limit() -> None:
    fault = classify_exit(exit_code=None, cause="start_error")
    state = CrashState()
    for n in range(1, 10):
        verdict = crash_verdict(fault, state, now=n * 100.0, **LIMITS)
        assert verdict is not None
        state = verdict.state
        assert verdict.backoff == min(0.5 * 2 ** (n - 1), 60.0)
        assert verdict.give_up == (n >= 8)
    assert state.streak == 0
