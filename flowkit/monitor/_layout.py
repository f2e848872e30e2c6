"""Where to draw each atom of a flow: a layered layout computed on the server.

The page's renderer (the vendored Cytoscape.js) draws nodes where this says
(its ``preset`` layout), so positions are worked out here, in Python, once per
flow and the same for every viewer: nodes are placed in
layers by longest path from the sources (every edge points down), in the
flow's order within a layer. Flows' start/end barriers of the compiled graph
are dropped where that does not add edges (a linear flow of nested flows
stays as many edges as it has) and kept as small points where it would (two
unordered flows in a row would otherwise need n x n edges).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["GraphShape", "Layout", "column", "flow_key", "layout", "shape_of"]

#: Pixels between layers and between nodes of one layer.
ROW, COLUMN = 70, 150


@dataclass(frozen=True, slots=True)
class GraphShape:
    """The nodes and edges to draw, as JSON-safe data (kept in flow metadata too).

    Attributes:
        nodes: ``{"id", "kind", "flow", "scope"}`` dicts; kind is ``task``, ``retry`` or
            ``barrier``; ``flow`` is the enclosing flow's name and ``scope`` that flow's
            own id (its start node's: two sub-flows may share a name). A shape stored
            before ``scope`` was kept, or learned from the event log, has none: its
            nodes are told apart by ``flow`` alone (:func:`flow_key`).
        edges: ``[source id, target id, decider name or None]`` lists.
    """

    nodes: tuple[dict[str, Any], ...]
    edges: tuple[tuple[str, str, str | None], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": list(self.nodes), "edges": [list(e) for e in self.edges]}

    @classmethod
    def from_dict(cls, data: Any) -> GraphShape:
        return cls(
            tuple(dict(n) for n in data.get("nodes", ())),
            tuple((str(e[0]), str(e[1]), e[2] if len(e) > 2 else None) for e in data.get("edges", ())),
        )


def flow_key(node: dict[str, Any]) -> str:
    """Which flow ``node`` (of a :class:`GraphShape`) is in: its ``scope``, else its flow's name."""
    return str(node.get("scope") or node.get("flow", ""))


def shape_of(flow: Any) -> GraphShape:
    """The drawable shape of ``flow``'s compiled graph."""
    from flowkit.export import to_networkx_data

    nodes, raw_edges = to_networkx_data(flow)
    edges = [(u, v, None if d is None else getattr(d, "__name__", type(d).__name__)) for u, v, d in raw_edges]
    kinds = {n["id"]: n["kind"] for n in nodes}
    succ: dict[str, list[tuple[str, str | None]]] = {n["id"]: [] for n in nodes}
    pred: dict[str, list[tuple[str, str | None]]] = {n["id"]: [] for n in nodes}
    for u, v, decider in edges:
        succ[u].append((v, decider))
        pred[v].append((u, decider))
    keep: list[dict[str, Any]] = []
    for node in nodes:
        node.pop("retry", None)
    for node in nodes:
        ident = node["id"]
        if kinds[ident] in ("flow_start", "flow_end"):
            ins, outs = pred[ident], succ[ident]
            if len(ins) * len(outs) <= len(ins) + len(outs) or not ins or not outs:
                # Bypass it: predecessors connect straight to successors.
                for u, d1 in ins:
                    succ[u] = [s for s in succ[u] if s[0] != ident]
                    for v, d2 in outs:
                        succ[u].append((v, d1 or d2))
                        pred[v].append((u, d1 or d2))
                for v, _ in outs:
                    pred[v] = [p for p in pred[v] if p[0] != ident]
                succ[ident], pred[ident] = [], []
                continue
            keep.append({"id": ident, "kind": "barrier", "flow": node["flow"], "scope": node["scope"]})
        else:
            keep.append(dict(node))
    kept = {n["id"] for n in keep}
    out_edges = tuple((u, v, d) for u in succ if u in kept for v, d in succ[u] if v in kept)
    return GraphShape(tuple(keep), out_edges)


@dataclass(frozen=True, slots=True)
class Layout:
    """Node positions (pixels) and the drawing's size."""

    positions: dict[str, tuple[int, int]]
    width: int
    height: int

    def to_dict(self, shape: GraphShape) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "nodes": [
                {**n, "x": self.positions[n["id"]][0], "y": self.positions[n["id"]][1]} for n in shape.nodes
            ],
            "edges": [list(e) for e in shape.edges],
        }


def layout(shape: GraphShape) -> Layout:
    """Place ``shape``'s nodes in layers by longest path from the sources."""
    ids: Sequence[str] = [n["id"] for n in shape.nodes]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for u, v, _ in shape.edges:
        preds[v].append(u)
        succs[u].append(v)
    indegree = {i: len(preds[i]) for i in ids}
    ready = deque(i for i in ids if indegree[i] == 0)
    level: dict[str, int] = {}
    while ready:
        node = ready.popleft()
        level[node] = max((level[p] + 1 for p in preds[node]), default=0)
        for nxt in succs[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    for node in ids:  # a cycle cannot come from a flow; be safe anyway
        level.setdefault(node, 0)
    rows: dict[int, list[str]] = {}
    for node in ids:
        rows.setdefault(level[node], []).append(node)
    widest = max((len(r) for r in rows.values()), default=1)
    positions: dict[str, tuple[int, int]] = {}
    for depth, row in rows.items():
        offset = (widest - len(row)) * COLUMN // 2
        for column, node in enumerate(row):
            positions[node] = (offset + column * COLUMN + COLUMN // 2, depth * ROW + ROW // 2)
    return Layout(positions, widest * COLUMN, (max(rows, default=0) + 1) * ROW)


def column(shape: GraphShape) -> Layout:
    """Place ``shape``'s nodes one under the other, in the given order.

    For a flow whose shape is unknown (no edges to lay out by): :func:`layout`
    would put every node in the first layer, one row as wide as the flow is
    long (300,000 pixels for 2,000 atoms), where the flow's order reads down.
    """
    positions = {node["id"]: (COLUMN // 2, index * ROW + ROW // 2) for index, node in enumerate(shape.nodes)}
    return Layout(positions, COLUMN, max(len(shape.nodes), 1) * ROW)
