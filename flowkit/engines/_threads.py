"""The parallel engine's own worker threads: a queue and N threads, nothing more.

:class:`concurrent.futures.ThreadPoolExecutor` makes a future, a work item and a
lock round-trip per call, and starts its threads one at a time as work arrives.
The engine needs none of that: it hands a call to a thread and hears back through
its completion queue. So a run borrows a :class:`WorkerThreads` whose threads are
already running, and returns it afterwards for the next run to reuse.

``size`` is a limit, not an allocation: a thread is started only when a call
arrives and no started thread is idle, so ``max_workers=1000`` for a flow that
never has more than three atoms ready costs three threads.

A pool is borrowed by one run at a time. Concurrent or nested runs (a task that
runs a flow of its own) borrow different pools, so they can never starve each
other of threads.
"""

from __future__ import annotations

import threading
from _queue import SimpleQueue  # queue's own, without the rest of the queue module
from collections.abc import Callable
from typing import Any

__all__ = ["WorkerThreads", "borrow", "give_back"]

_KEEP_IDLE = 2  # idle pools kept warm in all; older ones are closed


class WorkerThreads:
    """``size`` daemon threads running the calls put on one queue."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._queue: SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Started threads that finished their call and wait for another (each
        # submit takes one, so two quick submits never count on the same thread).
        self._idle = 0
        self._lock = threading.Lock()

    def _serve(self, first: tuple[Callable[..., None], tuple[Any, ...]]) -> None:
        get, lock = self._queue.get, self._lock
        item: tuple[Callable[..., None], tuple[Any, ...]] | None = first
        while item is not None:
            fn, args = item
            fn(*args)  # the engine's calls report their own outcome and never raise
            with lock:
                self._idle += 1
            item = get()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on an idle thread, a new one while below ``size``, or the next free one."""
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._serve,
                    args=((fn, args),),
                    name=f"flowkit-worker-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
                return
        self._queue.put((fn, args))

    def lend(self, delta: int) -> None:
        """Allow ``delta`` more (or fewer) threads: a call abandoned after its timeout
        keeps its thread busy, and the work queued behind it must not wait for it."""
        with self._lock:
            self.size += delta

    @property
    def started(self) -> int:
        """How many threads were started so far (at most ``size``)."""
        return len(self._threads)

    def stop(self) -> None:
        """Tell the threads to end once they finish what was already submitted."""
        for _ in self._threads:
            self._queue.put(None)

    def close(self) -> None:
        """Stop the threads and wait for them to end."""
        self.stop()
        for thread in self._threads:
            thread.join()


_idle: list[WorkerThreads] = []  # least recently returned first
_lock = threading.Lock()


def borrow(size: int) -> WorkerThreads:
    """Take an idle pool of exactly ``size`` threads, or start a new one."""
    with _lock:
        for position in range(len(_idle) - 1, -1, -1):
            if _idle[position].size == size:
                return _idle.pop(position)
    return WorkerThreads(size)


def give_back(pool: WorkerThreads) -> None:
    """Return a pool after a run; the most recent few stay warm, older ones are closed."""
    with _lock:
        _idle.append(pool)
        evicted = _idle[:-_KEEP_IDLE] if len(_idle) > _KEEP_IDLE else []
        del _idle[: len(evicted)]
    for old in evicted:
        old.close()
