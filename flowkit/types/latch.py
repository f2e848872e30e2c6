"""A count-down latch (TaskFlow's ``types.latch``): wait until N arrivals happened.

Tests and services start N things and wait for all of them to report in;
:meth:`Latch.countdown` is an arrival, :meth:`Latch.wait` blocks until there were
enough (or a timeout passes).
"""

from __future__ import annotations

import threading
import time

__all__ = ["Latch"]


class Latch:
    """Releases its waiters once :meth:`countdown` has been called ``count`` times.

    Args:
        count: Arrivals needed (at least one).

    Raises:
        ValueError: ``count`` is not above zero.
    """

    def __init__(self, count: int) -> None:
        count = int(count)
        if count <= 0:
            raise ValueError("Count must be greater than zero")
        self._count = count
        self._cond = threading.Condition()

    @property
    def needed(self) -> int:
        """How many arrivals are still needed (never below zero)."""
        return max(0, self._count)

    def countdown(self) -> None:
        """Record one arrival; the last needed one releases every waiter."""
        with self._cond:
            self._count -= 1
            if self._count <= 0:
                self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until released; return False if ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._count > 0:
                if deadline is None:
                    self._cond.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
