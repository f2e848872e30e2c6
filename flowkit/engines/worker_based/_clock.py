"""The clock the worker-based engine and the Python worker read time from.

Every deadline, expiry and timeout of the request lifecycle is computed from
a :class:`Clock`, never from the :mod:`time` module directly, so tests can
hand in a clock they move by hand and check timing logic (a request past its
deadline, an advert past its expiry) without waiting in real time. Blocking
reads from Redis still block in real time; only the decisions read the clock.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM", "Clock", "SystemClock"]


class Clock(Protocol):
    """What the engine and workers need from a clock."""

    def time(self) -> float:
        """Wall-clock time in unix seconds: compared with times other machines wrote."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go back: for local timeouts."""
        ...

    def sleep(self, seconds: float) -> None:
        """Pause the calling thread while polling."""
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


#: The clock used unless one is given.
SYSTEM: Clock = SystemClock()
