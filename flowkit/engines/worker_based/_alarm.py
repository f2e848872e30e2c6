"""The reply reader's alarm: ends its blocking read at the next deadline the reader knows of.

Why a thread: the worker-based engine's reply reader waits for replies in a
blocking ``XREAD``, and acts on its deadlines (a request nobody started by its
``transition_timeout``, a task past its own timeout, the periodic look for
workers) only once that read returns. Redis ends a blocked read only on its
timer's tick (``hz`` 10: every 100 ms), whatever block it was given, so a block
of 100 ms ended 100 to 200 ms later and a deadline could fire that late. A
shorter block does not help (a block of 1 ms also ends on the tick). Instead,
while the reader is blocked, this thread sleeps until the earliest deadline and
then wakes the read (:meth:`_wakeable.Reader.wake`: ``CLIENT UNBLOCK`` for the
read's connection), so the deadline fires within a millisecond or two.

What it costs: one ``CLIENT UNBLOCK`` round trip each time a deadline comes
while the reader waits with nothing to read; nothing while replies keep coming
(a read that returns on its own is never woken). The reader tells the alarm its
deadline before each read and that the read ended after it, under the alarm's
lock: the thread is notified only when a deadline comes earlier than the one it
sleeps towards, so a busy reader does not wake it once per read. The engine
thread tells it of an earlier deadline it set (:meth:`Alarm.sooner`), which
the blocked reader could not know of.

Used only on the real clock: a test's clock need not follow real time, and
the reader then reads in blocks as before, checking its deadlines after each.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from flowkit.engines.worker_based._clock import Clock

__all__ = ["Alarm"]

LOG = logging.getLogger("flowkit.engines.worker_based.engine")


class Alarm:
    """Calls ``ring`` once the clock reaches the deadline of the blocking read under way.

    Args:
        ring: ends the reader's blocking read (never raises).
        clock: the real clock (:func:`_clock.runs_in_real_time`).
    """

    def __init__(self, ring: Callable[[], None], clock: Clock) -> None:
        self._ring = ring
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        #: When to ring the read under way (inf: no read, or one without a deadline).
        self._due = math.inf
        #: What the thread sleeps towards: a due later than it needs no notify.
        self._target = math.inf
        self._reading = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="flowkit-replies-alarm", daemon=True)
        self._thread.start()

    def reading(self, due: float | None) -> None:
        """A blocking read begins: ring at ``due`` (monotonic seconds of the clock) unless it ends first."""
        at = math.inf if due is None else due
        with self._cond:
            self._reading = True
            self._due = at
            if at < self._target:
                self._cond.notify()

    def sooner(self, due: float) -> None:
        """A deadline at ``due`` was set (by another thread): ring the read under way then, if earlier."""
        with self._cond:
            # With no read under way the reader's next read asks for its own due, this one among them.
            if self._reading and due < self._due:
                self._due = due
                if due < self._target:
                    self._cond.notify()

    def done_reading(self) -> None:
        """The read ended: nothing to ring until the next one (the thread is not woken for this)."""
        with self._cond:
            self._reading = False
            self._due = math.inf

    def close(self) -> None:
        """Stop the thread: it rings no more, and ends at once (or once a ring under way returns).

        Not joined: a ring under way may wait for a Redis that stopped answering
        (its socket timeout), and the engine must not wait for it as it closes.
        """
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        cond, clock = self._cond, self._clock
        with cond:
            while not self._closed:
                due = self._target = self._due
                if due == math.inf:
                    cond.wait()
                    continue
                left = due - clock.monotonic()
                if left > 0:
                    cond.wait(left)
                    continue
                self._due = math.inf  # one ring per read
                cond.release()
                try:
                    self._ring()
                except Exception:  # the reader still sees the deadline when its read ends
                    LOG.debug("could not wake the reply reader at its deadline", exc_info=True)
                finally:
                    cond.acquire()
