"""Finished calls, handed from whatever ran them to the engine thread.

Pool workers, future callbacks and event-loop callbacks all put completions here;
only the engine thread takes them, so the scheduler and the runtime never need a
lock. A ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``,
``SystemExit``) is not a task failure to revert: it is carried across and raised
in the engine thread, so ``run()`` ends with it instead of hanging.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

from flowkit.engines._compiler import Node
from flowkit.types.failure import Failure

if TYPE_CHECKING:  # the serial engine never makes a future: it need not import them
    from concurrent.futures import Future

__all__ = ["RAISE", "Completion", "Completions"]

#: A finished call: (node, action, ok, result-or-Failure).
Completion = tuple[Node, int, bool, Any]

_RAISE = None  # the ``ok`` slot of a completion whose value must be raised
#: What a call returns as ``ok`` when its value is an exception to raise in the engine.
RAISE = _RAISE


class Completions:
    """A queue of finished calls plus the count of calls still out."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Node, int, bool | None, Any]] = queue.SimpleQueue()
        self.in_flight = 0

    def started(self) -> None:
        """Count one more call out (engine thread only)."""
        self.in_flight += 1

    def put(self, node: Node, action: int, ok: bool, value: Any) -> None:
        """Hand in a finished call (any thread)."""
        self._queue.put((node, action, ok, value))

    def put_raising(self, node: Node, action: int, error: BaseException) -> None:
        """Hand in a call that ended with an exception the engine must raise (any thread)."""
        if isinstance(error, Exception):
            self._queue.put((node, action, False, Failure.from_exception(error)))
        else:
            self._queue.put((node, action, _RAISE, error))

    def put_future(self, node: Node, action: int, future: Future[Any]) -> None:
        """Hand in a future whose result is ``(ok, value)`` (any thread)."""
        try:
            ok, value = future.result()
        except BaseException as err:  # a broken pool, a cancelled future, an interrupt
            self.put_raising(node, action, err)
            return
        if ok is _RAISE:
            self.put_raising(node, action, value)
        else:
            self._queue.put((node, action, ok, value))

    def take(self, timeout: float | None) -> list[Completion]:
        """Wait up to ``timeout`` for one completion, then take all that are ready."""
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        get = self._queue.get_nowait
        while True:
            try:
                items.append(get())
            except queue.Empty:
                break
        self.in_flight -= len(items)
        for item in items:
            if item[2] is _RAISE:
                raise item[3]
        return items  # type: ignore[return-value]
