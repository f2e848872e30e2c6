"""A clock that moves only when a test moves it, for code that takes a ``clock``.

Several seams read time through an injected clock, in one of two shapes: a
callable returning seconds (jobboards, conductors, timing listeners, the
benchmark's wait for Prefect's server) or an
object with ``monotonic()`` and ``sleep()`` (the engine's loop delays).
:class:`ManualClock` is both, so every such test uses one fake. Sleeping only
moves the clock and records what was asked, so a test can assert the delays a
loop chose without waiting for them. (The worker's clock also blocks threads
on events; it has its own fake, ``tests/workers/fake_clock.py``.)
"""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """Seconds that stand still until :meth:`advance` or :meth:`sleep` moves them."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        #: Every ``sleep`` asked for, in order.
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
