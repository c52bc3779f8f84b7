"""The worker threads that run a container's sync functions, and how a cancellation reaches one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from ..exception import InputCancellation
from .input_state import Input, Job
from .user_code import Target


class SyncPool:
    """Worker threads for sync functions, started as needed up to `size`.

    A queued item is a run of jobs one thread does one after another: a single-slot container
    hands a whole prefetched burst over at once (one queue hand-off, not one per input).
    """

    def __init__(self, size: int, run: Callable[[Target, list[Input]], None]) -> None:
        self._size = size
        self._run = run
        self._queue: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a job
        self._queued = 0  # jobs no thread has taken yet
        self._lock = threading.Lock()

    @property
    def idle(self) -> bool:
        """No job waits for a thread (the caller's thread is the only one busy)."""
        return self._queued == 0

    def submit(self, target: Target, batch: list[Input]) -> None:
        self.submit_run([(target, batch)])

    def submit_run(self, jobs: list[Job]) -> None:
        with self._lock:
            self._queued += 1
            if self._queued > self._idle and len(self._threads) < self._size:
                thread = threading.Thread(target=self._main, name=f"skylift-input-{len(self._threads)}",
                                          daemon=True)
                self._threads.append(thread)
                self._idle += 1
                thread.start()
        self._queue.put(jobs)

    def _main(self) -> None:
        while True:
            jobs = self._queue.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            try:
                for target, batch in jobs:
                    try:
                        self._run(target, batch)
                    except InputCancellation:
                        pass  # a cancellation that landed after its input had finished; nothing to do
            finally:
                with self._lock:
                    self._idle += 1


def _inject(thread_ident: int, exc_type: type[BaseException]) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident), ctypes.py_object(exc_type))


def _clear_async_exc(thread_ident: int) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident), None)
