"""The scheduler's decider skips: which atoms a link's decider's "no" ignores.

A link into ``v`` with a decider that says no skips ``v``, and the link's
:class:`~flowkit.deciders.Depth` says how much more: everything after it, its
flow, its neighbours, or the atom alone. Those atoms go to IGNORE and the run
passes through them. A run whose deciders all say yes (or that has none) never
needs this, so it is imported on first use rather than with the scheduler: the
first-load cost, ``doc/benchmarks.rst``. These functions are the scheduler's own
code kept apart, so they work on its counters directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkit import states as st
from flowkit.deciders import Depth
from flowkit.engines._compiler import FLOW_END, FLOW_START, RETRY

if TYPE_CHECKING:
    from flowkit.engines._compiler import Node
    from flowkit.engines._scheduler import Scheduler

__all__ = ["ignore"]


def ignore(scheduler: Scheduler, node: Node, depth: Depth) -> None:
    """Skip ``node`` (a decider said no) and what ``depth`` covers."""
    records = scheduler.records
    for index in _ignore_set(scheduler, node, depth):
        record = records[index]
        if record.state == st.PENDING:
            # Told first, so the runtime's transition sees the state it leaves.
            scheduler._hooks.record(scheduler._nodes[index], st.IGNORE, st.IGNORE)
            record.state = st.IGNORE
            record.intention = st.IGNORE
    if node.atom is None or scheduler._waiting[node.index] == 0:
        scheduler._forward_done(node.index)


def _ignore_set(scheduler: Scheduler, node: Node, depth: Depth) -> list[int]:
    nodes = scheduler._nodes
    if depth == Depth.ALL:
        return [i for i in scheduler._successors_closure(node.index) if nodes[i].atom is not None]
    targets = [node.index] if node.atom is not None else _first_atoms(nodes, node.index)
    if depth == Depth.ATOM:
        return targets
    if depth == Depth.NEIGHBORS:
        found = list(targets)
        for t in targets:
            found.extend(s for s in nodes[t].succ if nodes[s].atom is not None and nodes[s].kind != RETRY)
        return found
    # Depth.FLOW: successors inside the same flow, not entering nested flows.
    scope = node.scope
    seen = {node.index}
    stack = [node.index]
    found = []
    while stack:
        current = stack.pop()
        if nodes[current].atom is not None:
            found.append(current)
        for succ in nodes[current].succ:
            if succ not in seen and nodes[succ].scope is scope and nodes[succ].kind != FLOW_END:
                seen.add(succ)
                stack.append(succ)
    return found


def _first_atoms(nodes: list[Node], index: int) -> list[int]:
    """The atoms a flow node at ``index`` leads to first (through nested flows' starts)."""
    found: list[int] = []
    stack = list(nodes[index].succ)
    while stack:
        current = stack.pop()
        if nodes[current].atom is not None:
            found.append(current)
        elif nodes[current].kind == FLOW_START:
            stack.extend(nodes[current].succ)
    return found
