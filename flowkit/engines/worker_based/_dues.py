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
that no longer count (a request started, or finished, or started again: a job
taken over by another worker counts its timeout anew) are dropped lazily as they
reach the front, so :meth:`Dues.next` is amortised O(1) and no walk over the
requests in flight happens per read; the heap is swept of them whenever it has
doubled since its last sweep, so that a task with a long timeout at its top does
not keep every later task's entry. Use under the driver's lock.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import NamedTuple, Protocol

__all__ = ["Dues", "Timed"]

#: The heap's size before its first sweep (a sweep then waits for it to double).
_FIRST_SWEEP = 64


class Timed(Protocol):
    """What :class:`Dues` reads of a request."""

    state: str
    deadline: float
    #: When its worker said it started (a second start, a job taken over, restarts it).
    started_at: float
    timeout: float | None


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
        #: The heap's size past which it is swept of entries that no longer count.
        self._sweep_at = _FIRST_SWEEP

    def expires(self, request: Timed) -> None:
        """Track ``request``'s ``deadline``, set now (later than any tracked before: sends are in order)."""
        self._expiries.append(request)

    def times_out(self, request: Timed, at: float) -> None:
        """Track the timeout of ``request``, which just started running (``at``: its started_at + timeout)."""
        timeouts = self._timeouts
        heapq.heappush(timeouts, _Timeout(at, next(self._order), request))
        if len(timeouts) > self._sweep_at:
            timeouts[:] = [entry for entry in timeouts if self._counts(entry)]
            heapq.heapify(timeouts)
            self._sweep_at = max(_FIRST_SWEEP, 2 * len(timeouts))

    def _counts(self, entry: _Timeout) -> bool:
        """Whether ``entry`` is its request's timeout now: still running, and not started again since."""
        request = entry.request
        return (
            request.state == self._running
            and request.timeout is not None
            and entry.at == request.started_at + request.timeout
        )

    def next(self) -> float | None:
        """The earliest deadline still pending (maybe past), or None when none is."""
        expiries, unstarted = self._expiries, self._unstarted
        while expiries and expiries[0].state not in unstarted:
            expiries.popleft()
        timeouts = self._timeouts
        # An entry of a request started again stays behind its new one: dropped, or its
        # past time made every read a poll until the new timeout came (a busy loop).
        while timeouts and not self._counts(timeouts[0]):
            heapq.heappop(timeouts)
        soonest = expiries[0].deadline if expiries else None
        if timeouts and (soonest is None or timeouts[0].at < soonest):
            soonest = timeouts[0].at
        return soonest

    def clear(self) -> None:
        """Forget every deadline (the driver is closing)."""
        self._expiries.clear()
        self._timeouts.clear()
