"""The clock the worker-based engine and the Python worker read time from.

Every deadline, expiry and timeout of the request lifecycle is computed from
a :class:`Clock`, never from the :mod:`time` module directly, so tests can
hand in a clock they move by hand and check timing logic (a request past its
deadline, an advert past its expiry, a heartbeat that refreshes a claim, a
stop whose grace runs out) without waiting in real time. Blocking reads from
Redis still block in real time; only the decisions, and the waits between
them, go through the clock.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM", "Clock", "SystemClock", "Waitable", "WorkerClock", "runs_in_real_time"]


class Waitable(Protocol):
    """What :meth:`Clock.wait` waits on: a :class:`threading.Event` or :class:`threading.Condition`."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set (or notified) or ``timeout`` real seconds; return whether it was."""
        ...


class Clock(Protocol):
    """What the engine needs from a clock."""

    def time(self) -> float:
        """Wall-clock time in unix seconds: compared with times other machines wrote."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go back: for local timeouts."""
        ...

    def sleep(self, seconds: float) -> None:
        """Pause the calling thread while polling."""
        ...


class WorkerClock(Clock, Protocol):
    """What the Python worker needs from a clock: the engine's, and a wait that can end early."""

    def wait(self, waitable: Waitable, timeout: float) -> bool:
        """Wait on ``waitable`` for at most ``timeout`` seconds of this clock.

        A periodic loop that must also end early (a heartbeat until a stop
        event, a grace period until the last request is answered) waits here,
        so a test's clock decides when its period has passed.

        Args:
            waitable: an event, or a condition whose lock the caller holds.
            timeout: seconds of this clock.

        Returns:
            what ``waitable.wait`` returned: True when set or notified, False
            when the time ran out.
        """
        ...


class SystemClock:
    """The real clock: :func:`time.time`, :func:`time.monotonic`, :func:`time.sleep`."""

    __slots__ = ()

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, waitable: Waitable, timeout: float) -> bool:
        return waitable.wait(max(timeout, 0.0))


#: The clock used unless one is given.
SYSTEM: WorkerClock = SystemClock()


def runs_in_real_time(clock: Clock) -> bool:
    """Whether ``clock`` is the real one, so a wait may block on Redis in its stead.

    A blocking read (XREAD ... BLOCK) waits in real time. On the system clock
    that is the clock's time too, and a wait for an event or a deadline can be
    such a read; another clock (a test's, moved by hand) need not follow real
    time, and a wait on it must go through its ``sleep`` to reach its deadline.
    """
    return isinstance(clock, SystemClock)
