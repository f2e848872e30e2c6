"""The scheduler's side of a graph that changes while it runs: sub-flows spliced in, loops run again.

A dynamic sub-flow appends nodes to the compiled graph (:func:`grow`), and a loop
puts its body back to PENDING for the next iteration (:func:`restart`); their
modules (:mod:`~flowkit.engines._splice`, :mod:`~flowkit.engines._loops`) call
the scheduler's methods, which delegate here. A run without either never needs
this, so it is imported on first use rather than with the scheduler: the
first-load cost, ``doc/benchmarks.rst``. These functions are the scheduler's own
code kept apart, so they work on its counters directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowkit import states as st
from flowkit.engines._scheduler import _marked

if TYPE_CHECKING:
    from flowkit.engines._compiler import Node
    from flowkit.engines._scheduler import Scheduler

__all__ = ["grow", "restart"]


def grow(scheduler: Scheduler, join_end: int, spawner: int, records: Sequence[Any] | None) -> None:
    """Take up the nodes appended to the graph after ``spawner`` (see :meth:`Scheduler.grow`)."""
    old, new = len(scheduler.records), len(scheduler._nodes)
    extra = new - old
    if extra > 0:
        scheduler.records.extend(_marked(None if records is None else records[old:new], extra))
        for counters in (scheduler._waiting, scheduler._revert_wait, scheduler._finished_seq):
            counters.extend([0] * extra)
        for flags in (scheduler._fwd_done, scheduler._in_revert, scheduler._cleared, scheduler._busy):
            flags.extend([False] * extra)
        # New nodes rank after every older one among nodes ready together.
        if isinstance(scheduler._rank, range):
            scheduler._rank = range(new)
        else:
            scheduler._rank.extend(range(old, new))  # type: ignore[attr-defined]
        fwd_done, nodes = scheduler._fwd_done, scheduler._nodes
        for index in range(old, new):
            scheduler._waiting[index] = sum(1 for p in nodes[index].pred if not fwd_done[p])
    scheduler.join(join_end, spawner)


def restart(scheduler: Scheduler, body: list[int]) -> list[Node]:
    """Put a loop's ``body`` back to PENDING (see :meth:`Scheduler.restart`); return the atoms moved."""
    changed: list[Node] = []
    nodes, records, hooks = scheduler._nodes, scheduler.records, scheduler._hooks
    fwd_done = scheduler._fwd_done
    for index in body:
        fwd_done[index] = False
        scheduler._cleared[index] = False
        scheduler._in_revert[index] = False
        scheduler._revert_wait[index] = 0
        scheduler._busy[index] = False
        node = nodes[index]
        record = records[index]
        if node.atom is not None and (record.state != st.PENDING or record.intention != st.EXECUTE):
            hooks.record(node, st.PENDING, st.EXECUTE)  # before: see _resolving.retry_restarted
            record.state = st.PENDING
            record.intention = st.EXECUTE
            changed.append(node)
    for index in body:
        scheduler._waiting[index] = sum(1 for p in nodes[index].pred if not fwd_done[p])
    return changed
