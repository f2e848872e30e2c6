"""Finished calls and progress reports, handed from other threads to the engine thread.

Pool workers, future callbacks, event-loop callbacks and the threads relaying
progress (from a process pool's children, from remote workers) all put items
here; only the engine thread takes them, so the scheduler, the runtime and the
run's records have one writer and need no lock. Two kinds of item travel:

* a :class:`Completion`, a finished call. A ``BaseException`` that is not an
  ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) is not a task failure to
  revert: it is carried across and raised in the engine thread, so ``run()``
  ends with it instead of hanging;
* a :class:`ProgressReport` from a task running in another thread, applied by
  the engine thread (through :attr:`Completions.on_progress`) while it waits.
  A task's report is put before its completion, so it is applied first.
"""

from __future__ import annotations

import _thread
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowkit._utils.records import Record
from flowkit.engines._compiler import Node
from flowkit.engines._runtime import Completion  # Completion: the serial engine needs no queue

if TYPE_CHECKING:  # the serial engine never makes a future: it need not import them
    from concurrent.futures import Future

    from flowkit.engines._raised_calls import Raise

__all__ = ["RAISE", "Completion", "Completions", "ProgressReport"]


class ProgressReport(Record):
    """Progress a task reported from a thread other than the engine's.

    Attributes:
        name: the atom's name.
        progress: from 0.0 to 1.0.
        details: what the task passed along with it, if anything.
    """

    name: str
    progress: float
    details: dict[str, Any] | None


#: What a call returns as ``ok`` when its value is an exception to raise in the engine.
RAISE = None


class Completions:
    """A queue of finished calls and progress reports, plus the count of calls still out."""

    def __init__(self) -> None:
        # One reader (the engine thread), any number of writers: a deque (whose
        # append and popleft are atomic) and a lock the writers release to wake the
        # reader. No queue module: loading the ``_queue`` extension costs a quarter
        # of a millisecond of a process's first parallel run.
        self._items: deque[Completion | ProgressReport | Raise] = deque()
        # Held while nothing new is signalled; a writer releases it after appending.
        self._signal = _thread.allocate_lock()
        self._signal.acquire()
        self.in_flight = 0
        #: Applies a progress report; called by :meth:`take`, in the engine thread.
        #: Reports that arrive while it is None are dropped (no run is listening).
        self.on_progress: Callable[[ProgressReport], None] | None = None

    def started(self) -> None:
        """Count one more call out (engine thread only)."""
        self.in_flight += 1

    def _put(self, item: Completion | ProgressReport | Raise) -> None:
        self._items.append(item)
        signal = self._signal
        if signal.locked():
            try:  # noqa: SIM105 - contextlib.suppress costs more, on every completion
                signal.release()
            except RuntimeError:  # another writer released it just now: the reader is woken
                pass

    def put(self, node: Node, action: int, ok: bool, value: Any) -> None:
        """Hand in a finished call (any thread)."""
        self._put(Completion(node, action, ok, value))

    def put_progress(self, name: str, progress: float, details: dict[str, Any] | None) -> None:
        """Hand in a progress report for the engine thread to record (any thread)."""
        self._put(ProgressReport(name, progress, details))

    def put_raising(self, node: Node, action: int, error: BaseException) -> None:
        """Hand in a call that ended with an exception the engine must raise (any thread)."""
        from flowkit.engines import _raised_calls  # the first call that raises loads it (first-load cost)

        _raised_calls.put_raising(self, node, action, error)

    def put_raised(self, node: Node, action: int, error: BaseException) -> None:
        """Hand in what a call raised, from its ``except`` (any thread).

        An ``Exception`` or a ``CancelledError`` the task raised itself fails its
        atom (with the traceback being handled); anything else (an interrupt)
        is raised in the engine thread.
        """
        from flowkit.engines import _raised_calls  # the first call that raises loads it (first-load cost)

        _raised_calls.put_raised(self, node, action, error)

    def put_value_future(self, node: Node, action: int, future: Future[Any]) -> None:
        """Hand in a future whose result is the call's value: a coroutine run on a loop thread."""
        from flowkit._utils.asyncio_bridge import result_of  # imported by now: the future came from there

        try:
            value = result_of(future)
        except BaseException as err:
            self.put_raised(node, action, err)
        else:
            self._put(Completion(node, action, True, value))

    def put_fatal(self, error: BaseException) -> None:
        """Hand in a call that ended the run, not just its atom (any thread).

        ``error`` is raised in the engine thread whatever its class: the call's
        outcome is unknown (a cluster that dropped it), so its atom stays
        ``RUNNING``, in doubt, for a resume to run again.
        """
        from flowkit.engines import _raised_calls  # the first call that ends a run loads it (first-load cost)

        _raised_calls.put_fatal(self, error)

    def put_future(self, node: Node, action: int, future: Future[Any]) -> None:
        """Hand in a future whose result is ``(ok, value)`` (any thread)."""
        try:
            ok, value = future.result()
        except BaseException as err:  # a broken pool, a cancelled future, an interrupt
            self.put_raising(node, action, err)
            return
        if ok is RAISE:
            self.put_raising(node, action, value)
        else:
            self._put(Completion(node, action, ok, value))

    def take(self, timeout: float | None) -> list[Completion]:
        """Wait up to ``timeout`` for a completion, then take all that are ready.

        Progress reports met on the way are applied (in queue order) and do not
        end the wait.
        """
        items: list[Completion] = []
        pop = self._items.popleft
        signal = self._signal
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                item = pop()
            except IndexError:
                if items:
                    break
                # Nothing yet: wait for a writer's signal (one may be left over from
                # items already taken; then the deque is looked at again, and so on).
                if deadline is None:
                    signal.acquire()
                else:
                    left = deadline - time.monotonic()
                    if not (signal.acquire(timeout=left) if left > 0 else signal.acquire(False)):
                        break
                continue
            kind = type(item)
            if kind is Completion:
                items.append(item)  # type: ignore[arg-type]
            elif kind is ProgressReport:
                if self.on_progress is not None:
                    self.on_progress(item)  # type: ignore[arg-type]
            else:
                self.in_flight -= len(items) + 1
                raise item.error  # type: ignore[union-attr]
        self.in_flight -= len(items)
        return items
