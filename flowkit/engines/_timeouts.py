"""Per-task timeouts: each timed call races its deadline, and the first to finish reports.

A task with a ``timeout`` (its own, or the engine's ``default_timeout``) has its
``execute`` call wrapped in a :class:`TimedCall`. The call is *armed* when it
starts running (on a pool thread, or on the event loop, so time spent queued for a
free worker does not count) and a timer is set for its deadline. Whichever comes
first, the call's outcome or the timer, claims the call and hands one completion to
the engine; the other is ignored:

* the timer first: the atom fails with :class:`~flowkit.exceptions.TaskTimeout`;
  the call is *abandoned* and asked to stop if it can be (a coroutine or a future is
  cancelled; a thread cannot be stopped and runs on). When its outcome arrives
  later it is logged and dropped.
* the outcome first: the timer is cancelled.

Timers come from a :class:`Timer`: by default one daemon thread for the whole
process (:data:`SYSTEM_TIMER`), started on first use; tests pass one they move by
hand (the engine's ``clock`` option), so no unit test waits for a deadline.

What it costs: nothing for calls without a timeout (the drivers test one dict);
for a timed call, one small object, a heap push and a lock round-trip or two.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
import types
from collections.abc import Callable, Coroutine
from contextvars import copy_context
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit._utils.records import Record
from flowkit._utils.reprs import short_repr
from flowkit.engines._compiler import Node
from flowkit.engines._completions import Completions
from flowkit.engines._runtime import raised_cancel
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    import concurrent.futures as cf
    from typing import Protocol

    from flowkit.engines._runtime import Call
    from flowkit.engines._threads import WorkerThreads

    # Protocols only for the type checker: creating a Protocol class costs about a
    # millisecond, on the start-up path of every short-lived process.
    class Handle(Protocol):
        """A pending timer callback."""

        def cancel(self) -> None:
            """Make sure the callback does not run (if it has not already)."""

    class Timer(Protocol):
        """Where timeouts are measured: a monotonic clock that can call back later."""

        def monotonic(self) -> float:
            """Seconds from an arbitrary start that never go back."""
            ...

        def call_later(self, seconds: float, callback: Callable[[], None]) -> Handle:
            """Call ``callback()`` (from any thread) once ``seconds`` have passed."""
            ...


__all__ = ["SYSTEM_TIMER", "SystemTimer", "TimedCall", "Watchdog", "run_timed", "watched"]

_LOG = logging.getLogger("flowkit.engines.timeouts")


class _Entry:
    """A callback set for later; the handle :meth:`SystemTimer.call_later` returns."""

    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Due(Record):
    """An entry of the timer's heap, which orders them by ``(when, seq)``."""

    when: float  # time.monotonic() seconds
    seq: int  # ties on ``when`` run in the order set (and never compare ``entry``)
    entry: _Entry


class SystemTimer:
    """Real time, with one daemon thread that runs callbacks when they fall due.

    Cancelled entries stay in the heap until they fall due or the heap is mostly
    dead, when it is rebuilt: cancelling is the common case (most calls finish in
    time) and must be cheap.
    """

    def __init__(self) -> None:
        self._heap: list[_Due] = []
        self._cond = threading.Condition(threading.Lock())
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Handle:
        entry = _Entry(callback)
        when = time.monotonic() + seconds
        with self._cond:
            heap = self._heap
            if len(heap) > 256 and sum(1 for due in heap if due.entry.cancelled) > len(heap) // 2:
                heap[:] = [due for due in heap if not due.entry.cancelled]
                heapq.heapify(heap)
            earliest = heap[0].when if heap else None
            heapq.heappush(heap, _Due(when, next(self._seq), entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="flowkit-timeouts", daemon=True)
                self._thread.start()
            elif earliest is None or when < earliest:
                self._cond.notify()
        return entry

    def forget_after_fork(self) -> None:
        """In a forked child: the thread stayed in the parent, and so did the calls it timed.

        Without this the child's timer believed its thread was running, so no
        deadline set in the child ever fell due: a hung call there hung its run.
        """
        self._heap = []
        self._cond = threading.Condition(threading.Lock())  # held in the parent at the fork, maybe
        self._thread = None

    def _serve(self) -> None:
        cond, heap = self._cond, self._heap
        while True:
            with cond:
                while True:
                    while heap and heap[0].entry.cancelled:
                        heapq.heappop(heap)
                    if not heap:
                        cond.wait()
                        continue
                    delay = heap[0].when - time.monotonic()
                    if delay <= 0:
                        entry = heapq.heappop(heap).entry
                        break
                    cond.wait(delay)
            if not entry.cancelled:
                try:
                    entry.callback()
                except Exception:  # a bug in one callback must not stop every other timeout
                    _LOG.exception("a timeout callback failed")


#: The process-wide timer used unless an engine is given a ``clock``.
SYSTEM_TIMER = SystemTimer()
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=SYSTEM_TIMER.forget_after_fork)

# The states of a timed call.
_NEW, _ARMED, _DONE, _ABANDONED = range(4)


class Watchdog:
    """The timed calls of one run: their timer, their lock, and those abandoned.

    Args:
        timer: where deadlines are measured.
    """

    def __init__(self, timer: Timer) -> None:
        self.timer = timer
        self.lock = threading.Lock()
        #: Calls that timed out and have not returned yet (they may still be running).
        self.abandoned = 0
        #: Told ``+1`` when a call is abandoned and ``-1`` when it returns (a pool
        #: lends a thread for each running abandoned call, so work still queued runs).
        self.on_abandoned: Callable[[int], None] | None = None
        #: Set by a driver ending its own process pool's children, one of them running
        #: an abandoned call: that call's future then breaks (BrokenProcessPool), which
        #: is the engine's teardown, not an outcome of the call to log as late.
        self.stopping_processes = False
        self._armed: set[TimedCall] = set()
        self._helpers: WorkerThreads | None = None

    def call(self, done: Completions, node: Node, action: int, seconds: float) -> TimedCall:
        """A gate for one execute call of ``node``, reporting into ``done``."""
        return TimedCall(self, done, node, action, seconds)

    def run_inline(
        self, box: Completions, node: Node, action: int, call: Call, seconds: float
    ) -> tuple[bool, Any]:
        """Make ``call`` on a helper thread and wait for its outcome or its timeout (serial engine).

        Args:
            box: an empty completion queue the caller's thread waits on (progress
                reports queued on it are applied by that thread as it waits).

        Raises:
            BaseException: an interrupt the call raised (not an Exception).
        """
        box.started()
        timed = self.call(box, node, action, seconds)
        helpers = self._helpers
        if helpers is None:
            from flowkit.engines._threads import WorkerThreads

            helpers = self._helpers = WorkerThreads(1)
            self.on_abandoned = helpers.lend
        # In a copy of the caller's context, as an untimed call sees the caller's own.
        helpers.submit(copy_context().run, run_timed, timed, node, action, call.fn, call.kwargs)
        outcome = box.take(None)[0]
        return outcome.ok, outcome.value

    def close(self) -> None:
        """Cancel the timers still set (an interrupted run); late outcomes are then dropped."""
        with self.lock:
            armed, self._armed = self._armed, set()
        for call in armed:
            call.disarm()
        helpers, self._helpers = self._helpers, None
        if helpers is not None:
            # Threads still running an abandoned call end when it returns.
            helpers.stop()

    def _abandon(self, delta: int) -> None:
        self.abandoned += delta
        hook = self.on_abandoned
        if hook is not None:
            hook(delta)


class TimedCall:
    """One execute call racing its deadline; looks like a :class:`Completions` to drivers.

    Drivers hand it wherever they would hand the run's completions, call :meth:`arm`
    when the call starts, and :meth:`attach` a way to cancel the call if they have one.
    """

    __slots__ = (
        "_cancel",
        "_done",
        "_handle",
        "_started",
        "_state",
        "_watch",
        "action",
        "expired",
        "node",
        "seconds",
    )

    def __init__(self, watch: Watchdog, done: Completions, node: Node, action: int, seconds: float) -> None:
        self._watch = watch
        self._done = done
        self.node = node
        self.action = action
        self.seconds = seconds
        self._state = _NEW
        self._handle: Handle | None = None
        self._cancel: Callable[[], Any] | None = None
        self._started = 0.0
        #: Whether the deadline came first (the atom failed with TaskTimeout).
        self.expired = False

    # -- the driver's side -------------------------------------------------------

    def arm(self) -> None:
        """The call starts now: set its deadline."""
        watch = self._watch
        with watch.lock:
            if self._state != _NEW:
                return
            self._state = _ARMED
            watch._armed.add(self)
        self._started = watch.timer.monotonic()
        self._handle = watch.timer.call_later(self.seconds, self._expire)

    def attach(self, cancel: Callable[[], Any]) -> None:
        """Give a way to stop the call; used if (or as soon as) it times out."""
        with self._watch.lock:
            self._cancel = cancel
            expired = self._state == _ABANDONED
        if expired:
            _quietly(cancel)

    @property
    def settled(self) -> bool:
        """Whether the call's outcome came, or its deadline did (it was abandoned)."""
        return self._state >= _DONE

    def disarm(self) -> None:
        handle = self._handle
        if handle is not None:
            handle.cancel()

    # -- what drivers call on a Completions -------------------------------------------

    def put(self, node: Node, action: int, ok: bool, value: Any) -> None:
        if self._claim():
            self._done.put(node, action, ok, value)
        else:
            self.note_late("failed" if not ok else "succeeded", value)

    def put_raising(self, node: Node, action: int, error: BaseException) -> None:
        if self._claim():
            self._done.put_raising(node, action, error)
        else:
            self.note_late("raised", error)

    def put_fatal(self, error: BaseException) -> None:
        """A call that ended the run (see :meth:`Completions.put_fatal`); late, it is only logged."""
        if self._claim():
            self._done.put_fatal(error)
        else:
            self.note_late("raised", error)

    def put_future(self, node: Node, action: int, future: cf.Future[Any]) -> None:
        """A future whose result is ``(ok, value)`` (see :meth:`Completions.put_future`)."""
        if self._claim():
            self._done.put_future(node, action, future)
        elif not future.cancelled():
            error = future.exception()
            if error is not None and self._watch.stopping_processes and _broken_pool(error):
                _LOG.debug("atom '%s': its abandoned call's process was ended with the pool", self.node.name)
                return
            ok, value = future.result() if error is None else (False, error)
            self.note_late("succeeded" if ok else "failed", value)

    def put_value_future(self, node: Node, action: int, future: cf.Future[Any]) -> None:
        """A future whose result is the call's value (a coroutine run on a loop thread)."""
        if not self._claim():
            # Cancelled by the time-out: the coroutine reports a late outcome itself
            # if it ignored the cancellation (see _watched).
            return
        self._done.put_value_future(node, action, future)

    # -- internals ----------------------------------------------------------------

    def _claim(self) -> bool:
        """The call's outcome is here: take the report, unless the timer already did."""
        watch = self._watch
        with watch.lock:
            state = self._state
            if state == _ABANDONED:
                self._state = _DONE
            else:
                self._state = _DONE
                watch._armed.discard(self)
        if state == _ABANDONED:
            watch._abandon(-1)
            return False
        handle = self._handle
        if handle is not None:
            handle.cancel()
        return True

    def _expire(self) -> None:
        watch = self._watch
        with watch.lock:
            if self._state != _ARMED:
                return
            self._state = _ABANDONED
            watch._armed.discard(self)
            cancel = self._cancel
        self.expired = True
        name = self.node.name
        error = exc.TaskTimeout(
            f"atom '{name}' did not finish within its timeout of {self.seconds:g} s; "
            "the call was abandoned (cancelled where it could be) and the atom failed",
            atom=name,
            timeout=self.seconds,
        )
        watch._abandon(+1)
        self._done.put(self.node, self.action, False, Failure.from_exception(error))
        if cancel is not None:
            _quietly(cancel)

    def note_late(self, how: str, value: Any) -> None:
        """Log the outcome of a call that came after its time-out (and is ignored)."""
        took = self._watch.timer.monotonic() - self._started
        _LOG.warning(
            "atom '%s' %s after %.3g s, past its timeout of %g s; the outcome is ignored (%s)",
            self.node.name,
            how,
            took,
            self.seconds,
            _describe(value),
        )


def run_timed(
    call: TimedCall, node: Node, action: int, fn: Callable[..., Any], kwargs: dict[str, Any]
) -> None:
    """Run ``fn(**kwargs)`` in this thread as a timed call; a coroutine goes to the loop thread.

    A coroutine is handed to the shared event-loop thread and this thread returns at
    once, so a timed-out coroutine is cancelled rather than left holding a thread.
    """
    call.arm()
    try:
        value = fn(**kwargs)
        if type(value) is types.CoroutineType:
            from flowkit.engines._runtime import _shared_bridge

            future = _shared_bridge().submit(watched(value, call))
            call.attach(future.cancel)
            future.add_done_callback(lambda f: call.put_value_future(node, action, f))
            return
    except Exception:
        call.put(node, action, False, Failure())
        return
    except BaseException as err:
        if raised_cancel(err):
            call.put(node, action, False, Failure._of_any())
        else:
            call.put_raising(node, action, err)
        return
    call.put(node, action, True, value)


async def watched(coro: Coroutine[Any, Any, Any], call: TimedCall) -> Any:
    """Await ``coro``; if it ends after its call timed out (it ignored being cancelled), log so."""
    import asyncio

    try:
        value = await coro
    except asyncio.CancelledError:
        raise
    except BaseException as err:
        if call.expired:
            call.note_late("raised", err)
        raise
    if call.expired:
        call.note_late("succeeded", value)
    return value


def _broken_pool(error: BaseException) -> bool:
    """Whether ``error`` says the process pool died under the call (not the call's own failure)."""
    from concurrent.futures.process import BrokenProcessPool  # only process pools raise it

    return isinstance(error, BrokenProcessPool)


def _quietly(cancel: Callable[[], Any]) -> None:
    try:
        cancel()
    except Exception:
        _LOG.exception("could not cancel a timed-out call")


def _describe(value: Any) -> str:
    if isinstance(value, Failure):
        return f"failure {value.exception_str}"
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return short_repr(value)
