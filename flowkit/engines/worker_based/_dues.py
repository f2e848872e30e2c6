"""The deadlines of the requests in flight, earliest first, for the reply reader to wake at.

The reader acts on two deadlines of a request: its ``deadline`` (counted from
when it was sent or held: it fails unless a worker starts it by then) and, for a
task with a timeout, its ``started_at + timeout`` (its result is refused past
it). It used to see them only at its periodic look. It now asks :meth:`Dues.next`
before each blocking read for the earliest one still pending, and wakes then
(``_alarm``).

What it costs: the expiries are kept in the order the requests were sent, which
is their deadlines' order (each is the send's time plus the same
``transition_timeout``; a request held again keeps its place and deadline), so
adding one is a deque append; timeouts differ per task and go in a heap. Entries
that no longer count (a request started, or finished) are dropped lazily as
they reach the front, so :meth:`Dues.next` is amortised O(1) and no walk over
the requests in flight happens per read. Use under the driver's lock.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import NamedTuple, Protocol

__all__ = ["Dues", "Timed"]


class Timed(Protocol):
    """What :class:`Dues` reads of a request."""

    state: str
    deadline: float


class _Timeout(NamedTuple):
    """A running request's timeout: when, a tie-breaker (requests do not compare), and the request."""

    at: float
    order: int
    request: Timed


class Dues:
    """The requests' pending deadlines.

    Args:
        unstarted: the states in which a request's ``deadline`` counts.
        running: the state in which its task's timeout counts.
    """

    def __init__(self, unstarted: frozenset[str], running: str) -> None:
        self._unstarted = unstarted
        self._running = running
        self._expiries: deque[Timed] = deque()
        self._timeouts: list[_Timeout] = []
        self._order = itertools.count()

    def expires(self, request: Timed) -> None:
        """Track ``request``'s ``deadline``, set now (later than any tracked before: sends are in order)."""
        self._expiries.append(request)

    def times_out(self, request: Timed, at: float) -> None:
        """Track the timeout of ``request``, which just started running."""
        heapq.heappush(self._timeouts, _Timeout(at, next(self._order), request))

    def next(self) -> float | None:
        """The earliest deadline still pending (maybe past), or None when none is."""
        expiries, unstarted = self._expiries, self._unstarted
        while expiries and expiries[0].state not in unstarted:
            expiries.popleft()
        timeouts, running = self._timeouts, self._running
        while timeouts and timeouts[0].request.state != running:
            heapq.heappop(timeouts)
        soonest = expiries[0].deadline if expiries else None
        if timeouts and (soonest is None or timeouts[0].at < soonest):
            soonest = timeouts[0].at
        return soonest

    def clear(self) -> None:
        """Forget every deadline (the driver is closing)."""
        self._expiries.clear()
        self._timeouts.clear()
