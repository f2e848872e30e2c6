"""The parallel engine's own worker threads: a deque of calls and N threads, nothing more.

:class:`concurrent.futures.ThreadPoolExecutor` makes a future, a work item and a
lock round-trip per call, and starts its threads one at a time as work arrives.
The engine needs none of that: it hands a call to a thread and hears back through
its completion queue. So a run borrows a :class:`WorkerThreads` whose threads are
already running, and returns it afterwards for the next run to reuse.

``size`` is a limit, not an allocation: a thread is started only when a call
arrives and no started thread is idle, so ``max_workers=1000`` for a flow that
never has more than three atoms ready costs three threads.

Starting a thread does not wait for it to run. :meth:`threading.Thread.start`
waits until the new thread is scheduled, which on a busy machine takes a
millisecond or more per thread: a pool of 32 then took 30-50 ms to start, one
thread after another, while the work waited. The engine thread here waits for
a new thread at most :data:`_HANDSHAKE_S` (as long as a thread takes to start on
an idle machine, so that the first calls start at once), then goes on handing
out work; threads late to start still start together. It does not even wait for
the thread it just started, but for the one :data:`_STARTS_AHEAD` starts before:
a new thread takes a tenth of a millisecond to be scheduled, and the engine
thread makes the next one meanwhile instead of waiting idle. (The waiting is
still needed: while the engine thread holds the GIL, a started thread cannot
begin its call.) With 32 threads for 200 tasks of 10 ms, the eighth thread (the
last of those that run seven tasks, so the one the run waits for) began its
first task about 0.15 ms sooner. The threads are made with
:func:`_thread.start_new_thread` for that reason, and do what
:class:`threading.Thread` would do for them: take the name ``flowkit-worker-N``
(what a task's log records show), and the tracing and profiling functions set
with :func:`threading.settrace`/:func:`threading.setprofile` (debuggers,
coverage). Python before 3.13 keeps a worker's :class:`threading.Thread` record
(a "dummy") in :func:`threading.enumerate` after the thread ends.

This module does not import :mod:`threading` (most of a millisecond of a
process's first parallel run): a program that never imported it has no thread
names to show nor tracing set through it. A worker takes its name as soon as
:mod:`threading` is imported, checked when it starts and before each call, so a
task's log records (:mod:`logging` imports :mod:`threading`) carry it.

Idle threads wait each on a lock of their own, and are handed a call directly
(no queue module: loading the ``_queue`` extension costs a quarter of a
millisecond of a process's first parallel run).

A pool is borrowed by one run at a time. Concurrent or nested runs (a task that
runs a flow of its own) borrow different pools, so they can never starve each
other of threads.
"""

from __future__ import annotations

import _thread
import os
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    # A call handed to a thread. For type checkers only: subscripting Callable
    # costs some 20 µs of a process's first parallel run.
    _Call = tuple[Callable[..., None], tuple[Any, ...]]

__all__ = ["WorkerThreads", "bookkeeping_threads", "borrow", "default_thread_count", "give_back"]

_KEEP_IDLE = 2  # idle pools kept warm in all; older ones are closed
#: How long the engine thread waits for a thread it started to run (seconds).
_HANDSHAKE_S = 0.0005
#: How many threads may be starting while the engine thread starts another.
_STARTS_AHEAD = 2


def default_thread_count() -> int:
    """How many threads run calls at once when nobody says: five per CPU, as TaskFlow.

    TaskFlow's parallel engine and its worker run calls on
    :class:`futurist.ThreadPoolExecutor`, whose default is ``cpu_count() * 5``:
    flows of tasks that mostly wait (on I/O, on each other) get that many at once.
    flowkit's parallel and asyncio engines and a worker's ``threads_count``
    default to the same (a smaller default ran a service's ten waiting tasks six
    at a time on two cores, and a rendezvous of seven tasks never met). Threads
    are started only as calls need them, so a large default costs nothing a flow
    does not use. Here, in the module the parallel engine loads anyway, so that no
    caller imports a module more for it (the first-load cost, ``doc/benchmarks.rst``).
    """
    return (os.cpu_count() or 1) * 5


class _Parked:
    """An idle thread: the lock it waits on, and the call it is handed (None: end)."""

    __slots__ = ("call", "wake")

    def __init__(self) -> None:
        self.wake = _thread.allocate_lock()
        self.wake.acquire()
        self.call: _Call | None = None


class WorkerThreads:
    """``size`` daemon threads running the calls handed to them.

    ``keep_idle``: how many threads may wait idle; one that finds that many
    waiting when its call returns ends instead (None: all of them wait, as an
    engine's warm pool does). For a pool shared by whatever runs at once, so
    that a burst does not leave its threads behind for the life of the process.
    """

    def __init__(self, size: int, keep_idle: int | None = None) -> None:
        self.size = size
        self._keep_idle = keep_idle
        # Calls no thread was free for, taken in order as threads finish theirs.
        self._work: deque[_Call] = deque()
        self._parked: list[_Parked] = []
        # One per live thread, released when the thread ends.
        self._ended: list[_thread.LockType] = []
        # Threads started so far, ended ones included: the next one's number.
        self._numbered = 0
        self._stopping = False
        self._lock = _thread.allocate_lock()
        # Handshakes of the threads started last, not waited for yet.
        self._starting: deque[_thread.LockType] = deque()

    def _thread_main(
        self, number: int, first: _Call, running: _thread.LockType, ended: _thread.LockType
    ) -> None:
        running.release()
        try:
            threading = sys.modules.get("threading")
            if threading is not None:
                # What threading.Thread does for a thread it starts.
                trace, profile = threading.gettrace(), threading.getprofile()
                if trace is not None:
                    sys.settrace(trace)
                if profile is not None:
                    sys.setprofile(profile)
            self._serve(first, number, ended)
        finally:
            ended.release()

    def _serve(self, first: _Call, number: int, ended: _thread.LockType) -> None:
        lock, work, parked, keep_idle = self._lock, self._work, self._parked, self._keep_idle
        modules = sys.modules
        named = False
        me = _Parked()
        call: _Call | None = first
        while call is not None:
            if not named:
                # None until threading is imported (or while another thread imports it).
                current_thread = getattr(modules.get("threading"), "current_thread", None)
                if current_thread is not None:
                    current_thread().name = f"flowkit-worker-{number}"
                    named = True
            fn, args = call
            fn(*args)  # the engine's calls report their own outcome and never raise
            with lock:
                if work:
                    call = work.popleft()
                    continue
                if self._stopping:
                    return
                if keep_idle is not None and len(parked) >= keep_idle:
                    self._ended.remove(ended)  # no longer counts against size
                    return
                parked.append(me)
            me.wake.acquire()  # released by submit() or stop(), which set me.call first
            call = me.call

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on an idle thread, a new one while below ``size``, or the next free one."""
        with self._lock:
            if self._parked:
                idle = self._parked.pop()
                idle.call = (fn, args)
                idle.wake.release()
                return
            starting = self._starting
            if len(self._ended) >= self.size:
                self._work.append((fn, args))
                if not starting:
                    return
                # Every thread is started: let the last ones begin their calls
                # before this thread goes on queueing (and holding the GIL).
                handshakes = list(starting)
                starting.clear()
            else:
                starting.append(self._start_thread((fn, args)))
                if len(starting) <= _STARTS_AHEAD:
                    return
                handshakes = [starting.popleft()]
        for running in handshakes:
            running.acquire(timeout=_HANDSHAKE_S)

    def lend(self, delta: int) -> None:
        """Allow ``delta`` more (or fewer) threads: a call abandoned after its timeout
        keeps its thread busy, and the work queued behind it must not wait for it.

        Work already queued gets the lent threads at once: waiting for the next
        :meth:`submit` to start them left it queued for good when nothing more
        was submitted (every call of the run handed out already).
        """
        with self._lock:
            self.size += delta
            work = self._work
            while work and len(self._ended) < self.size and not self._stopping:
                self._start_thread(work.popleft())

    def _start_thread(self, first: _Call) -> _thread.LockType:
        """Start one more thread on ``first`` (the caller holds the lock); its start handshake."""
        running, ended = _thread.allocate_lock(), _thread.allocate_lock()
        running.acquire()
        ended.acquire()
        _thread.start_new_thread(self._thread_main, (self._numbered, first, running, ended))
        self._numbered += 1
        self._ended.append(ended)
        return running

    @property
    def started(self) -> int:
        """How many threads were started and have not ended for ``keep_idle`` (at most ``size``)."""
        return len(self._ended)

    @property
    def idle(self) -> int:
        """How many started threads wait for a call (the next :meth:`submit` wakes one).

        A thread counts once it has parked after its call returned: a caller that
        saw the call's effect may submit again before then, and a new thread starts
        for that call (while below ``size``).
        """
        with self._lock:
            return len(self._parked)

    def stop(self) -> None:
        """Tell the threads to end once they finish what was already submitted."""
        with self._lock:
            self._stopping = True
            parked, self._parked = self._parked, []
        for idle in parked:
            idle.call = None
            idle.wake.release()

    def close(self) -> None:
        """Stop the threads and wait for them to end."""
        self.stop()
        with self._lock:
            live = list(self._ended)
        for ended in live:
            ended.acquire()
            ended.release()


_idle: list[WorkerThreads] = []  # least recently returned first
_lock = _thread.allocate_lock()

#: At most this many runs do their bookkeeping on :func:`bookkeeping_threads` at
#: once; more wait for one to end. As many as the largest ``max_workers`` (each
#: run holds a thread).
_MAX_BOOKKEEPING = 1024
#: How many of those threads wait idle for the next runs; more end as their run ends.
_KEEP_BOOKKEEPING = 2
_bookkeeping: WorkerThreads | None = None


def _forget_pools() -> None:
    """In a forked child: the idle pools' threads stayed in the parent, so drop the pools.

    A run in the child would otherwise hand its calls to threads that do not
    exist there, and wait for them forever.
    """
    global _lock, _bookkeeping  # noqa: PLW0603 - a lock another thread held at the fork stays held in the child
    _idle.clear()
    _lock = _thread.allocate_lock()
    _bookkeeping = None


os.register_at_fork(after_in_child=_forget_pools)


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


def bookkeeping_threads() -> WorkerThreads:
    """The threads :meth:`~flowkit.engines.asyncio.AsyncioEngine.run_async` runs its engines on.

    One for each run under way, started as runs need them; made on first use
    (most programs never call run_async). Not an idle pool of :func:`give_back`'s:
    it is shared by every run at once, and keeping it there would evict the
    engines' warm pools. A burst of runs started as many threads, and all of
    them stayed parked for the life of the process (200 concurrent runs, 200
    idle threads); now :data:`_KEEP_BOOKKEEPING` stay for the next runs, as
    many as a program awaiting one run at a time reuses, and the others end
    with their run.
    """
    global _bookkeeping  # noqa: PLW0603 - made on first use
    with _lock:
        if _bookkeeping is None:
            _bookkeeping = WorkerThreads(_MAX_BOOKKEEPING, keep_idle=_KEEP_BOOKKEEPING)
        return _bookkeeping
