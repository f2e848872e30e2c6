"""A clock the test moves by hand, for the timing logic of engines and workers.

Hand it to the code under test (``clock=`` on the worker-based engine and the
Python worker); both read the time only through it. Time stands still until
:meth:`FakeClock.advance`, so a test can put a request past its deadline or a
worker's advert past its expiry at once, without waiting for either.
``sleep`` jumps the clock forward by the time asked (as trio's autojumping
mock clock does), so a loop that polls "until a deadline" runs to that deadline
immediately, in no real time.
"""

from __future__ import annotations

import threading
import time

__all__ = ["FakeClock"]


class FakeClock:
    """Wall time starting at the real time of creation, monotonic time at 1000; both move together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wall = time.time()
        self._monotonic = 1000.0
        self._offset = 0.0
        self.monotonic_reads = 0

    def time(self) -> float:
        """Unix seconds, as ``time.time()``."""
        with self._lock:
            return self._wall + self._offset

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, as ``time.monotonic()``; counts its callers."""
        with self._lock:
            self.monotonic_reads += 1
            return self._monotonic + self._offset

    def sleep(self, seconds: float) -> None:
        """Return at once, the clock moved ``seconds`` on."""
        self.advance(max(seconds, 0.0))

    def advance(self, seconds: float) -> None:
        """Move both times ``seconds`` forward."""
        with self._lock:
            self._offset += seconds
