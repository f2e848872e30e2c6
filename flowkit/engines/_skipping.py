"""The scheduler's decider skips: which atoms a link's decider's "no" ignores.

A link into ``v`` with a decider that says no skips ``v``, and the link's
:class:`~flowkit.deciders.Depth` says how much more: everything after it, its
flow, its neighbours, or the atom alone. Those atoms go to IGNORE and the run
passes through them. A link into a nested flow is decided here too, once for
each atom the flow starts with (:func:`admit_flow`). A run whose deciders all say
yes on links between atoms (or that has none) never needs this, so it is
imported on first use rather than with the scheduler: the first-load cost,
``doc/benchmarks.rst``. These functions are the scheduler's own code kept apart,
so they work on its counters directly.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from flowkit import states as st
from flowkit.deciders import Depth
from flowkit.engines._compiler import FLOW_END, FLOW_START, RETRY

if TYPE_CHECKING:
    from flowkit.engines._compiler import FlowScope, Node
    from flowkit.engines._scheduler import Scheduler

__all__ = ["admit_flow", "first_atoms", "ignore"]


def ignore(scheduler: Scheduler, node: Node, depth: Depth) -> None:
    """Skip atom ``node`` (a decider said no) and what ``depth`` covers.

    Always an atom: a "no" on a link into a nested flow skips its first atoms,
    each passed here by :func:`admit_flow`.
    """
    records = scheduler.records
    for index in _ignore_set(scheduler, node, depth):
        record = records[index]
        if record.state == st.PENDING:
            # Told first, so the runtime's transition sees the state it leaves.
            scheduler._hooks.record(scheduler._nodes[index], st.IGNORE, st.IGNORE)
            record.state = st.IGNORE
            record.intention = st.IGNORE
    if scheduler._waiting[node.index] == 0:
        scheduler._forward_done(node.index)


def admit_flow(scheduler: Scheduler, flow: Node, first: list[int] | None = None) -> None:
    """Ask the deciders of the links into a nested flow (its start node, ready) for each atom it starts with.

    TaskFlow hands the deciders of a link into a flow down to the atoms the flow
    starts with, and asks them for each of those atoms as it becomes ready: a
    decider is called once per first atom, and a "no" skips that atom and what
    the link's depth reaches from it, one first atom after the other (for an
    unordered ``sub`` of s1, s2 then z and the default depth: s1, z, s2). A
    first atom no longer PENDING (a skip of an earlier one reached it, or it
    ran before a resume) is not asked about.

    ``first``: the flow's first atoms (:func:`first_atoms`), when the caller has
    walked to them already; they are found here otherwise.
    """
    nodes, records, hooks = scheduler._nodes, scheduler.records, scheduler._hooks
    for index in first if first is not None else first_atoms(nodes, flow.index):
        if records[index].state != st.PENDING:
            continue
        depth = hooks.decide(flow)
        if scheduler.halted:  # the decider raised: nothing more is decided or started
            scheduler._push_exec(flow.index)
            return
        if depth is not None:
            ignore(scheduler, nodes[index], depth)
    scheduler._forward_done(flow.index)


def _ignore_set(scheduler: Scheduler, node: Node, depth: Depth) -> list[int]:
    """The atoms a "no" on a link into atom ``node`` skips at ``depth``, in the order TaskFlow skips them."""
    nodes = scheduler._nodes
    if depth == Depth.ATOM:
        return [node.index]
    if depth == Depth.NEIGHBORS:
        found = [node.index]
        found.extend(s for s in node.succ if nodes[s].atom is not None and nodes[s].kind != RETRY)
        return found
    # ALL: everything after it. FLOW: what follows it in its own flow, not entering nested flows.
    within = node.scope if depth == Depth.FLOW else None
    return [i for i in _depth_first(nodes, node.index, within) if nodes[i].atom is not None]


def _depth_first(nodes: list[Node], index: int, within: FlowScope | None) -> list[int]:
    """``index`` and the nodes after it, as TaskFlow's depth-first walk visits them: last successor first.

    With ``within``, the walk stays among that flow's own nodes (not into nested
    flows, nor out through the flow's end).
    """
    found = [index]
    seen = {index}
    stack = list(nodes[index].succ)
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        node = nodes[current]
        if within is not None and (node.scope is not within or node.kind == FLOW_END):
            continue
        found.append(current)
        stack.extend(node.succ)
    return found


def first_atoms(nodes: list[Node], index: int) -> list[int]:
    """The atoms a flow node at ``index`` leads to first (through nested flows' starts).

    Breadth first, in the order the flow's items were added, as TaskFlow visits them.
    """
    found: list[int] = []
    queue = deque(nodes[index].succ)
    while queue:
        current = queue.popleft()
        if nodes[current].atom is not None:
            found.append(current)
        elif nodes[current].kind == FLOW_START:
            queue.extend(nodes[current].succ)
    return found
