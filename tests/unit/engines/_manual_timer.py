"""A timer the test moves by hand, for task timeouts (the engines' ``clock`` option).

Time stands still until :meth:`ManualTimer.advance`, which runs the callbacks that
fell due in the calling (test) thread. :meth:`wait_armed` blocks until the engine
has set a number of timers, which it does when a timed call starts running: a
test knows its task started without sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["ManualTimer"]


class _Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimer:
    """``monotonic()`` and ``call_later()`` over a time that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0
        self._cond = threading.Condition()
        self._handles: list[_Handle] = []
        #: How many timers were set so far.
        self.armed = 0

    def monotonic(self) -> float:
        with self._cond:
            return self.now

    def call_later(self, seconds: float, callback: Callable[[], None]) -> _Handle:
        with self._cond:
            handle = _Handle(self.now + seconds, callback)
            self._handles.append(handle)
            self.armed += 1
            self._cond.notify_all()
            return handle

    def wait_armed(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` timers were set in all (fail after ``timeout`` real seconds)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.armed >= count, timeout):
                raise AssertionError(f"only {self.armed} of {count} timed calls started")

    def wait_pending(self, timeout: float = 10.0) -> None:
        """Block until a timer is set and neither cancelled nor run (fail after ``timeout`` real seconds).

        What a test that moves time wave after wave waits on: a call started by
        the last :meth:`advance` (on a thread lent for an abandoned one) may set
        its timer before the test looks or after; counting arms from "now" misses
        the first case and waits for an arm that only its own next move can cause.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: any(not h.cancelled for h in self._handles), timeout):
                raise AssertionError(f"no timer pending after {self.armed} timed call(s) started")

    def pending(self) -> int:
        """Timers set and neither cancelled nor run."""
        with self._cond:
            return sum(1 for h in self._handles if not h.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time on and run, in this thread, the callbacks that fell due."""
        with self._cond:
            self.now += seconds
            due = [h for h in self._handles if not h.cancelled and h.when <= self.now]
            self._handles = [h for h in self._handles if h not in due]
        for handle in due:
            if not handle.cancelled:
                handle.callback()
