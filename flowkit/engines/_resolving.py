"""The scheduler's undoing: resolving a failure, reverting newest first, retrying a scope.

When an atom fails, the retry controlling it (if any) decides how much is undone
(:func:`resolve`); that part of the graph becomes the *revert set*, whose nodes
with nothing left to wait for are reverted or cleared at once (:func:`settle`).
A retry that chose to retry then has its scope made ready again
(:func:`retry_restarted`). See :mod:`flowkit.engines._scheduler` for the counters;
the per-revert bookkeeping (``reverted``, ``_clear``) stays there, as a call
through this module's import for each reverted atom made reverting 15% slower.

A successful run never needs any of this, so it is imported on the first failure
(or the first revert a resumed run finds) rather than with the scheduler: the
first-load cost, ``doc/benchmarks.rst``. These functions are the scheduler's own
code kept apart, so they work on its counters directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from flowkit import states as st
from flowkit._utils.records import Record
from flowkit.engines._scheduler import _CLEAR_STATES, _TO_REVERT_STATES
from flowkit.retry import Decision

if TYPE_CHECKING:
    from flowkit.engines._compiler import Node
    from flowkit.engines._scheduler import Scheduler

__all__ = ["Resolution", "resolve", "retry_restarted", "settle"]

# How a failure is resolved (TaskFlow's strategies; UNDEFINED = no retry in scope).
_UNDEFINED = "UNDEFINED"


class Resolution(Record):
    """How the scheduler resolved one failure: the cause of the reverts it ordered.

    Attributes:
        failed: the atom whose ``execute`` failed.
        decision: ``RETRY``, ``REVERT`` or ``REVERT_ALL``; None when no retry
            controls the failed atom (the whole flow reverts).
        retry: the retry whose decision was applied (None with no decision).
    """

    failed: Node
    decision: Decision | None
    retry: Node | None


def resolve(scheduler: Scheduler, failed: Node) -> None:
    """Apply the failure resolution strategy for ``failed`` (TaskFlow's rules)."""
    kind, retry = _determine(scheduler, failed, failed)
    # Read by the runtime's record() hook as _mark_revert marks each atom.
    scheduler.resolution = Resolution(failed, None if kind == _UNDEFINED else Decision(kind), retry)
    if kind == Decision.RETRY and retry is not None:
        scope = scheduler._successors_closure(retry.index)
        _mark_revert(scheduler, scope[1:], retry_node=retry)
    elif kind == Decision.REVERT and retry is not None:
        _mark_revert(scheduler, scheduler._successors_closure(retry.index))
    else:
        # Every node, spliced ones included (the compiled order predates them).
        _mark_revert(scheduler, range(len(scheduler._nodes)))


def _determine(scheduler: Scheduler, failed: Node, origin: Node) -> tuple[str, Node | None]:
    if failed.retry < 0:
        return _UNDEFINED, None
    retry = scheduler._nodes[failed.retry]
    decision = scheduler._hooks.ask_retry(retry, failed, origin)
    if decision == Decision.RETRY:
        return Decision.RETRY, retry
    if decision == Decision.REVERT:
        parent = _determine(scheduler, retry, origin)
        if scheduler._defer_reverts:
            return parent
        if parent[0] != _UNDEFINED and parent[0] != Decision.REVERT:
            return parent
        return Decision.REVERT, retry
    if decision == Decision.REVERT_ALL:
        return Decision.REVERT_ALL, retry  # the retry that chose it (everything reverts)
    raise ValueError(f"retry '{retry.name}' returned unknown decision {decision!r}")


def _mark_revert(scheduler: Scheduler, indices: Iterable[int], retry_node: Node | None = None) -> None:
    """Put ``indices`` (closed under successors) into the revert set."""
    added: list[int] = []
    nodes, records, in_revert = scheduler._nodes, scheduler.records, scheduler._in_revert
    hooks = scheduler._hooks
    for index in indices:
        if in_revert[index]:
            # A retry already set to retry (a sibling's earlier RETRY) that a
            # wider decision now covers is reverted, not retried: REVERT_ALL
            # (or an enclosing REVERT/RETRY) undoes its scope for good.
            record = records[index]
            if record.intention == st.RETRY and not scheduler._busy[index] and not scheduler._cleared[index]:
                record.intention = st.REVERT
                hooks.record(nodes[index], None, st.REVERT)
            continue
        in_revert[index] = True
        added.append(index)
        node = nodes[index]
        if node.atom is not None:
            records[index].intention = st.REVERT
            hooks.record(node, None, st.REVERT)
    if retry_node is not None:
        r = retry_node.index
        if records[r].intention != st.REVERT:
            in_revert[r] = True
            records[r].intention = st.RETRY
            hooks.record(retry_node, None, st.RETRY)
            added.append(r)
    cleared, revert_wait = scheduler._cleared, scheduler._revert_wait
    for index in added:
        revert_wait[index] = sum(1 for s in nodes[index].succ if not cleared[s])
    for index in sorted(added, key=scheduler._rank.__getitem__, reverse=True):
        if revert_wait[index] == 0 and not cleared[index]:
            settle(scheduler, index)


def settle(scheduler: Scheduler, index: int) -> None:
    """Act on a revert-set node whose successors are all cleared."""
    current = scheduler.records[index].state
    if scheduler._nodes[index].atom is None or current in _CLEAR_STATES:
        scheduler._clear(index)
    elif current in _TO_REVERT_STATES or current == st.RETRYING or scheduler._in_doubt(index):
        scheduler._push_revert(index)
    # RUNNING with a call out: executed() queues it once it finishes.


def retry_restarted(scheduler: Scheduler, retry: Node) -> list[Node]:
    """Reset a retry's scope to run again; returns the atoms whose state changed."""
    changed: list[Node] = []
    nodes, records, hooks = scheduler._nodes, scheduler.records, scheduler._hooks
    scope = scheduler._successors_closure(retry.index)
    for index in scope:
        scheduler._in_revert[index] = False
        scheduler._cleared[index] = False
        scheduler._fwd_done[index] = False
        scheduler._revert_wait[index] = 0
    for index in scope[1:]:
        node = nodes[index]
        record = records[index]
        if node.atom is not None and (record.state != st.PENDING or record.intention != st.EXECUTE):
            new_state = None if record.state == st.PENDING else st.PENDING
            # Told first, so the runtime's transition sees the state it leaves.
            hooks.record(node, new_state, st.EXECUTE)
            record.state = st.PENDING
            record.intention = st.EXECUTE
            if new_state is not None:
                changed.append(node)
    fwd_done = scheduler._fwd_done
    for index in scope:
        scheduler._waiting[index] = sum(1 for p in nodes[index].pred if not fwd_done[p])
    r = retry.index
    scheduler._in_revert[r] = False
    scheduler._cleared[r] = False
    # The retry itself goes RUNNING when the runtime starts executing it again.
    hooks.record(retry, None, st.EXECUTE)
    records[r].intention = st.EXECUTE
    return changed
