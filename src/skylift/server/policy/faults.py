"""Why a container ended, and what that may cost: pure decisions over what the worker reported.

Every container end is classified before anything is counted (docs/faults.md):

    kind           what happened                                      retries   crash streak   its inputs
    USER           it failed on its own: init_failed, OOM of its own  OOM only  if before ready  run again
                   limit, a non-zero exit, a crash signal (SEGV, …),                            (OOM: fail,
                   its image can't be built                                                     maybe retry)
    OUTSIDE_KILL   SIGKILL/SIGTERM/SIGINT/SIGHUP that we didn't send  no        no             run again
    INFRA          its worker was lost or shut down; the worker       no        no (own cap    run again
                   couldn't start it (runtime, mounts)                          for starts)
    PLATFORM_STOP  we asked it to stop (scale-down, redeploy, …)      no        no             run again

"re-run" is a redelivery of the same attempt, capped by `Settings.internal_retry_cap`. A user's
own `os.kill(os.getpid(), SIGKILL)` reads as OUTSIDE_KILL: the wire can't tell them apart, and
re-running an input is the safe mistake (the redelivery cap still ends a loop over one input).

`crash_verdict` is the pool's crash-loop bookkeeping for a container that ended before it was
ready: USER faults count towards `startup_crash_limit`; platform faults (OUTSIDE_KILL, INFRA)
only back off, and several of them within `BURST_WINDOW` (one `pkill`, one lost worker) count
once. Only INFRA start errors can give up, after `platform_limit` bursts in a row, so a worker
that can never start the function's containers still answers its callers.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass

# Signals a process gets from someone else (an operator, the OOM killer of the host, a supervisor);
# SEGV, ABRT, BUS, FPE, ILL… come from the process's own faults.
OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
# Platform faults this close together are one event (several starts killed at once).
BURST_WINDOW = 1.0

# TaskEvent causes (see `_protocol/api.py`).
CAUSE_OOM = "oom"  # exceeded its own memory limit
CAUSE_STOPPED = "stopped"  # the worker stopped it because the control plane asked
CAUSE_WORKER_STOPPING = "worker_stopping"  # the worker stopped it because the worker is shutting down
CAUSE_START_ERROR = "start_error"  # the worker could not start it (runtime, mounts, volumes)
CAUSE_IMAGE = "image"  # its image could not be built
CAUSE_WORKER_LOST = "worker_lost"  # set by the control plane: its worker exited or stayed away


class FaultKind(enum.Enum):
    USER = "user"
    OUTSIDE_KILL = "outside_kill"
    INFRA = "infra"
    PLATFORM_STOP = "platform_stop"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    reason: str  # for the system log: "killed by SIGKILL, which skylift did not send"
    start_error: bool = False  # INFRA: the worker could not start it (the one platform fault that can give up)

    @property
    def platform(self) -> bool:
        """Not the function's doing: never charged to retries or the crash streak."""
        return self.kind is not FaultKind.USER


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify_exit(*, exit_code: int | None, signal_number: int | None = None, cause: str = "",
                  stop_requested: bool = False, init_failed: bool = False) -> Fault:
    """Classify one container end.

    Args:
        exit_code: its exit status (128 + N when killed by signal N); None when it never ran.
        signal_number: the signal that ended it, when the worker knows (else derived from exit_code).
        cause: the TaskEvent cause (CAUSE_*), "" when none was given.
        stop_requested: the control plane asked it to stop (or killed it).
        init_failed: it reported `container.init_failed` (import or @enter raised).
    """
    if init_failed:
        return Fault(FaultKind.USER, "its code failed to import or an @enter hook raised")
    if cause == CAUSE_OOM:
        return Fault(FaultKind.USER, "it exceeded its memory limit")
    if stop_requested:
        return Fault(FaultKind.PLATFORM_STOP, "skylift stopped it")
    if cause == CAUSE_WORKER_LOST:
        return Fault(FaultKind.INFRA, "its worker was lost")
    if cause == CAUSE_WORKER_STOPPING:
        return Fault(FaultKind.INFRA, "its worker shut down")
    if cause == CAUSE_STOPPED:
        return Fault(FaultKind.PLATFORM_STOP, "its worker stopped it")
    if cause == CAUSE_IMAGE:
        return Fault(FaultKind.USER, "its image could not be built")
    if cause == CAUSE_START_ERROR or exit_code is None:
        return Fault(FaultKind.INFRA, "its worker could not start it", start_error=True)
    if signal_number is None and exit_code > 128:
        signal_number = exit_code - 128
    if signal_number is not None:
        name = signal_name(signal_number)
        if signal_number in OUTSIDE_SIGNALS:
            return Fault(FaultKind.OUTSIDE_KILL, f"killed by {name}, which skylift did not send")
        return Fault(FaultKind.USER, f"it crashed ({name})")
    if exit_code == 0:
        return Fault(FaultKind.USER, "it exited on its own (code 0)")
    return Fault(FaultKind.USER, f"it exited with code {exit_code}")


@dataclass(frozen=True)
class CrashState:
    """A pool's crash-loop bookkeeping; both streaks reset when a container becomes ready."""

    streak: int = 0  # USER faults before ready, in a row
    platform_streak: int = 0  # bursts of platform faults before ready, in a row
    last_platform_at: float = float("-inf")


@dataclass(frozen=True)
class Verdict:
    state: CrashState
    backoff: float  # seconds before the pool starts another container (0: no new wait)
    give_up: bool  # fail the pool's waiting sync inputs (spawned ones wait for a fix)


def crash_verdict(fault: Fault, state: CrashState, *, now: float, user_limit: int, platform_limit: int,
                  backoff_max: float) -> Verdict | None:
    """The pool's new crash state after a container ended before it was ready; None: nothing changes."""
    if fault.kind is FaultKind.USER:
        streak = state.streak + 1
        backoff = min(2.0 ** (streak - 1) * 0.5, backoff_max)
        return Verdict(CrashState(streak, state.platform_streak, state.last_platform_at), backoff,
                       streak >= user_limit)
    if fault.kind is FaultKind.PLATFORM_STOP:
        return None
    if now - state.last_platform_at < BURST_WINDOW:  # the same burst (timed from its first fault): counted
        return Verdict(state, 0.0, False)
    bursts = state.platform_streak + 1
    if fault.start_error:  # it will likely fail the same way again: back off like a crash loop
        backoff = min(2.0 ** (bursts - 1) * 0.5, backoff_max)
    else:  # one kill is no reason to wait; a repeating one backs off
        backoff = 0.0 if bursts == 1 else min(2.0 ** (bursts - 2) * 0.5, backoff_max)
    give_up = fault.start_error and bursts >= platform_limit
    return Verdict(CrashState(state.streak, bursts, now), backoff, give_up)
