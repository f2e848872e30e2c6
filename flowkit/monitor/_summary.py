"""A big graph's summary: its nodes gathered in groups, and one group's part drawn on demand.

Cytoscape draws about 3,000 nodes a second here (``tools/bench_monitor.py``):
a flow of 10,000 atoms took seconds to appear, and a column of 10,000 boxes
cannot be read anyway. Past :data:`SUMMARY_NODES` nodes the page draws a
summary instead: each sub-flow one node (a long one cut in pieces of at most
:data:`GROUP_NODES`), linked where any of their nodes are, which the page
labels with its atoms' counts by state; a group clicked is fetched alone
(:meth:`Summary.part`) and drawn in its place.

Groups are consecutive runs of one flow's nodes (a flow told by its
identity, :func:`~flowkit.monitor._layout.flow_key`, not by its name, which
two sub-flows side by side may share) in a topological order of the graph
(ties broken by the flow's own order, so a sub-flow's atoms stay together):
every edge then goes from a group to itself or to a later one, and the
summary is laid out as any graph is, without cycles.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from flowkit.monitor._layout import GraphShape, flow_key, layout

__all__ = ["GROUP_NODES", "MAX_GROUPS", "SUMMARY_NODES", "Group", "Summary", "summarize"]

#: The most nodes a graph is drawn whole with (the page asks ``?summary=1``).
#: Measured in Chromium here: 1,000 nodes drawn in about 0.5 s, 2,000 in 0.7 s,
#: 5,000 in 1.6 s, 10,000 in 3.3 s, with the layout and the transfer on top;
#: 2,000 is also the most atoms whose shape ``flowkit run`` keeps.
SUMMARY_NODES = 2000

#: The most nodes of one group, so that a group clicked is drawn at once (a longer
#: flow's groups are bigger: see :data:`MAX_GROUPS`).
GROUP_NODES = 250

#: The most groups a summary aims at: past ``MAX_GROUPS * GROUP_NODES`` nodes,
#: groups hold more nodes each, and many small sub-flows in a row share a group.
MAX_GROUPS = 200


@dataclass(frozen=True, slots=True)
class Group:
    """Some consecutive nodes of one flow (or of several small ones), drawn as one node.

    Attributes:
        id: the id of its first node (unique: a node is in one group), which
            ``?group=`` names.
        label: the flow's name, ``name (2/5)`` for a piece of a long one, or
            ``first … last (n flows)`` for small flows sharing a group.
        atoms: its atoms' names (tasks and retries), in order: what the page counts by state.
        barriers: its other nodes (a nested flow's start or end, kept where it saves edges).
    """

    id: str
    label: str
    atoms: tuple[str, ...]
    barriers: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "atoms": list(self.atoms),
            "barriers": list(self.barriers),
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """A shape's groups, the links between them, and each node's group.

    Attributes:
        shape: the whole shape summarised.
        groups: in the order of the graph.
        edges: ``(source group id, target group id)`` for each pair of groups some edge joins.
        group_of: each node's group id.
    """

    shape: GraphShape
    groups: tuple[Group, ...]
    edges: tuple[tuple[str, str], ...]
    group_of: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``?summary=1`` past :data:`SUMMARY_NODES`: the groups placed as nodes are."""
        shape = GraphShape(
            tuple({"id": g.id, "kind": "group", "flow": g.label} for g in self.groups),
            tuple((u, v, None) for u, v in self.edges),
        )
        placed = layout(shape)
        return {
            "summary": True,
            "nodes": len(self.shape.nodes),
            "width": placed.width,
            "height": placed.height,
            "groups": [
                {**g.to_dict(), "x": placed.positions[g.id][0], "y": placed.positions[g.id][1]}
                for g in self.groups
            ],
            "edges": [[u, v] for u, v in self.edges],
        }

    def part(self, group: str) -> dict[str, Any] | None:
        """The nodes of ``group`` placed as a graph of their own, and every edge touching them.

        Positions are the part's own (from 0, 0): the page puts the part where
        the group was. Edges to or from nodes of other groups are given too, by
        node id, for the page to draw to whatever shows that node. None when
        no group has that id.
        """
        if self.group_of.get(group) != group:
            return None
        inside = {n for n, g in self.group_of.items() if g == group}
        nodes = tuple(n for n in self.shape.nodes if n["id"] in inside)
        edges = tuple(e for e in self.shape.edges if e[0] in inside or e[1] in inside)
        own = GraphShape(nodes, tuple(e for e in edges if e[0] in inside and e[1] in inside))
        drawn = layout(own).to_dict(own)
        drawn["group"] = group
        drawn["edges"] = [list(e) for e in edges]
        return drawn


def summarize(shape: GraphShape) -> Summary:
    """Gather ``shape``'s nodes in groups (see the module's docstring)."""
    order = _topological(shape)
    nodes = {n["id"]: n for n in shape.nodes}
    runs: list[list[str]] = []
    for ident in order:
        # By the flow's identity, not its name: two sub-flows of one name side by side are two groups.
        if runs and flow_key(nodes[runs[-1][-1]]) == flow_key(nodes[ident]):
            runs[-1].append(ident)
        else:
            runs.append([ident])
    size = max(GROUP_NODES, math.ceil(len(order) / MAX_GROUPS))
    pieces: list[tuple[str, list[str]]] = []
    for run in runs:
        flow = str(nodes[run[0]].get("flow", ""))
        count = math.ceil(len(run) / size)
        step = math.ceil(len(run) / count)
        for k in range(count):
            label = flow if count == 1 else f"{flow} ({k + 1}/{count})"
            pieces.append((label, run[k * step : (k + 1) * step]))
    if len(pieces) > MAX_GROUPS:
        pieces = _packed(pieces, size)
    groups: list[Group] = []
    group_of: dict[str, str] = {}
    for label, members in pieces:
        atoms = tuple(m for m in members if nodes[m].get("kind") != "barrier")
        barriers = tuple(m for m in members if nodes[m].get("kind") == "barrier")
        groups.append(Group(members[0], label, atoms, barriers))
        for member in members:
            group_of[member] = members[0]
    links: dict[tuple[str, str], None] = {}
    for u, v, _ in shape.edges:
        gu, gv = group_of[u], group_of[v]
        if gu != gv:
            links[(gu, gv)] = None
    return Summary(shape, tuple(groups), tuple(links), group_of)


def _packed(pieces: list[tuple[str, list[str]]], size: int) -> list[tuple[str, list[str]]]:
    """Consecutive small pieces joined up to ``size`` nodes each (many small sub-flows in a row)."""
    packed: list[tuple[list[str], list[str]]] = []  # (labels, members)
    for label, members in pieces:
        if packed and len(packed[-1][1]) + len(members) <= size:
            packed[-1][0].append(label)
            packed[-1][1].extend(members)
        else:
            packed.append(([label], list(members)))
    return [
        (labels[0] if len(labels) == 1 else f"{labels[0]} \u2026 {labels[-1]} ({len(labels)} flows)", members)
        for labels, members in packed
    ]


def _topological(shape: GraphShape) -> list[str]:
    """The node ids in a topological order, the shape's own order between nodes free to go first.

    A node on a cycle (which a flow cannot make) is put after the rest, in the shape's order.
    """
    index = {n["id"]: i for i, n in enumerate(shape.nodes)}
    ids = [n["id"] for n in shape.nodes]
    succs: dict[str, list[str]] = {i: [] for i in ids}
    indegree = dict.fromkeys(ids, 0)
    for u, v, _ in shape.edges:
        succs[u].append(v)
        indegree[v] += 1
    ready = [index[i] for i in ids if indegree[i] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = ids[heapq.heappop(ready)]
        order.append(node)
        for nxt in succs[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, index[nxt])
    if len(order) < len(ids):
        placed = set(order)
        order.extend(i for i in ids if i not in placed)
    return order
