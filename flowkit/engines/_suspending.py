"""What a suspended run left: whether it stopped before its end.

A run asked to suspend lets its running atoms finish and then stops; it ends
SUSPENDED only if something could still run or revert, and REVERTED or done
otherwise, as on TaskFlow. Only a suspended run asks, so this is imported on
first use rather than with the engine: the first-load cost, ``doc/benchmarks.rst``.
:func:`has_work` is the scheduler's own code kept apart, so it reads its queues
directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowkit.engines._runtime import Runtime
    from flowkit.engines._scheduler import Scheduler

__all__ = ["has_work", "work_left"]


def has_work(scheduler: Scheduler) -> bool:
    """Tell whether ``next_item()`` would still hand something out (see :meth:`Scheduler.has_work`)."""
    revert_heap = scheduler._revert_heap
    while revert_heap:
        index = revert_heap[0][2]
        if (
            scheduler._in_revert[index]
            and not scheduler._cleared[index]
            and (scheduler._busy[index] or scheduler._revert_wait[index] == 0)
            and scheduler._revert_action(index) is not None
        ):
            return True
        _pop(scheduler, revert_heap)
    ready = scheduler._ready
    while ready:
        index = ready[0][2]  # the smallest entry, in a heap as in a deque in order
        if not (
            scheduler._waiting[index]
            or scheduler._in_revert[index]
            or scheduler._fwd_done[index]
            or scheduler._busy[index]
        ):
            return True
        if isinstance(ready, list):  # a heap (see Scheduler._reorder)
            _pop(scheduler, ready)
        else:
            ready.popleft()
    return False


def _pop(scheduler: Scheduler, heap: list[tuple[int, int, int]]) -> None:
    heappop = scheduler._heappop
    assert heappop is not None  # a queue is a heap only once the heap functions are loaded
    heappop(heap)


def work_left(runtime: Runtime) -> bool:
    """Tell whether a suspended run stopped before its end (something could still run or revert)."""
    if runtime.scheduler.has_work():
        return True
    limiter = runtime.limiter
    if limiter is not None and limiter.has_reoffer():
        return True
    loops = runtime.loops
    return loops is not None and bool(loops.timers)
