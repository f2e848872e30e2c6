"""A clock the test moves by hand, for the timing logic of engines and workers.

Hand it to the code under test (``clock=`` on the worker-based engine and the
Python worker); both read the time only through it. Time stands still until
:meth:`FakeClock.advance`, so a test can put a request past its deadline or a
worker's advert past its expiry at once, without waiting for either.
``sleep`` jumps the clock forward by the time asked (as trio's autojumping
mock clock does), so a loop that polls "until a deadline" runs to that deadline
immediately, in no real time.

``wait`` is where the worker's periodic loops block (the heartbeat, a stop's
grace period): it returns when what it waits on is set or notified, or once
:meth:`FakeClock.advance` has moved the clock past its timeout, never because
real time passed. :meth:`FakeClock.settle` is trio's
``wait_all_tasks_blocked`` for it: it returns once the threads waiting on the
clock have all seen the last advance and are blocked again, so a test knows a
heartbeat has run (or a grace period has not yet ended) without sleeping.
"""

from __future__ import annotations

import itertools
import threading
import time

from flowkit.engines.worker_based._clock import Waitable

__all__ = ["FakeClock"]

#: Real seconds between two looks at the clock while a ``wait`` blocks on its
#: event or condition (a threading.Event cannot wake another Condition, so the
#: waiter takes turns); this bounds only how soon a wait notices an advance,
#: never what it decides.
POLL = 0.005


class FakeClock:
    """Wall time starting at the real time of creation, monotonic time at 1000; both move together."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._wall = time.time()
        self._monotonic = 1000.0
        self._offset = 0.0
        self._advances = 0  # how many times advance() ran: a waiter's "seen up to"
        self._waiters: dict[int, int] = {}  # waiting threads' tickets -> the advance they last saw
        self._tickets = itertools.count()
        self.monotonic_reads = 0

    def time(self) -> float:
        """Unix seconds, as ``time.time()``."""
        with self._changed:
            return self._wall + self._offset

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, as ``time.monotonic()``; counts its callers."""
        with self._changed:
            self.monotonic_reads += 1
            return self._monotonic + self._offset

    def sleep(self, seconds: float) -> None:
        """Return at once, the clock moved ``seconds`` on."""
        self.advance(max(seconds, 0.0))

    def advance(self, seconds: float) -> None:
        """Move both times ``seconds`` forward, waking the waits that are due."""
        with self._changed:
            self._offset += seconds
            self._advances += 1
            self._changed.notify_all()

    def wait(self, waitable: Waitable, timeout: float) -> bool:
        """Wait until ``waitable`` is set (or notified) or the clock has been moved ``timeout`` on.

        Args:
            waitable: an event, or a condition whose lock the caller holds.
            timeout: seconds of this clock.

        Returns:
            True when ``waitable`` was set or notified, False when the time ran out.
        """
        ticket = next(self._tickets)
        with self._changed:
            due = self._offset + timeout
            self._waiters[ticket] = self._advances
            self._changed.notify_all()
        try:
            while True:
                if waitable.wait(POLL):
                    return True
                with self._changed:
                    if self._offset >= due:
                        return False
                    if self._waiters[ticket] != self._advances:
                        self._waiters[ticket] = self._advances  # saw it, and waits on
                        self._changed.notify_all()
        finally:
            with self._changed:
                del self._waiters[ticket]
                self._changed.notify_all()

    def settle(self, waiters: int = 1, timeout: float = 10.0) -> None:
        """Return once ``waiters`` threads wait on this clock, each having seen the last advance.

        Args:
            waiters: how many threads the code under test has waiting on the clock.
            timeout: real seconds to give up after (a bug: the test fails).

        Raises:
            AssertionError: they did not all come back to wait in time.
        """

        def settled() -> bool:
            return sum(seen == self._advances for seen in self._waiters.values()) >= waiters

        with self._changed:
            if not self._changed.wait_for(settled, timeout):
                raise AssertionError(
                    f"{waiters} thread(s) expected waiting on the clock after advance #{self._advances};"
                    f" waiting: {sorted(self._waiters.values())}"
                )
