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

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowkit._utils.records import Record
from flowkit.engines._compiler import Node
from flowkit.engines._runtime import Completion  # defined there: the serial engine needs no queue
from flowkit.types.failure import Failure

if TYPE_CHECKING:  # the serial engine never makes a future: it need not import them
    from _queue import SimpleQueue
    from concurrent.futures import Future

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


class _Raise(Record):
    """An exception the engine thread must raise (an interrupt met by a call)."""

    error: BaseException


#: What a call returns as ``ok`` when its value is an exception to raise in the engine.
RAISE = None


class Completions:
    """A queue of finished calls and progress reports, plus the count of calls still out."""

    def __init__(self) -> None:
        # queue's own C queue, without importing queue and threading; imported here,
        # as the serial engine's records come from this module and it needs no queue
        # (loading the extension costs a quarter of a millisecond).
        from _queue import Empty, SimpleQueue

        self._empty = Empty
        self._queue: SimpleQueue[Completion | ProgressReport | _Raise] = SimpleQueue()
        self.in_flight = 0
        #: Applies a progress report; called by :meth:`take`, in the engine thread.
        #: Reports that arrive while it is None are dropped (no run is listening).
        self.on_progress: Callable[[ProgressReport], None] | None = None

    def started(self) -> None:
        """Count one more call out (engine thread only)."""
        self.in_flight += 1

    def put(self, node: Node, action: int, ok: bool, value: Any) -> None:
        """Hand in a finished call (any thread)."""
        self._queue.put(Completion(node, action, ok, value))

    def put_progress(self, name: str, progress: float, details: dict[str, Any] | None) -> None:
        """Hand in a progress report for the engine thread to record (any thread)."""
        self._queue.put(ProgressReport(name, progress, details))

    def put_raising(self, node: Node, action: int, error: BaseException) -> None:
        """Hand in a call that ended with an exception the engine must raise (any thread)."""
        if isinstance(error, Exception):
            self._queue.put(Completion(node, action, False, Failure.from_exception(error)))
        else:
            self._queue.put(_Raise(error))

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
            self._queue.put(Completion(node, action, ok, value))

    def take(self, timeout: float | None) -> list[Completion]:
        """Wait up to ``timeout`` for a completion, then take all that are ready.

        Progress reports met on the way are applied (in queue order) and do not
        end the wait.
        """
        items: list[Completion] = []
        get = self._queue.get
        empty = self._empty
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                if items:
                    item = get(block=False)
                else:
                    left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                    item = get(timeout=left)
            except empty:
                break
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
