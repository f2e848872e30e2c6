"""TaskFlow's graph types (``types.graph``): networkx graphs with a few helpers.

flowkit's own engine does not use networkx (its compiler keeps integer-indexed
nodes, which is much cheaper), but programs written for TaskFlow build and print
these graphs, so they exist with the same names and behaviour. networkx is the
``graph`` extra: ``pip install 'flowkit[graph]'``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Hashable, Iterator
from typing import Any

try:
    import networkx as nx
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "flowkit.types.graph needs networkx: pip install 'flowkit[graph]'", name=err.name
    ) from err

__all__ = ["DiGraph", "Graph", "OrderedDiGraph", "OrderedGraph", "merge_graphs"]


def _describe(graph: Any, edge_notation: str) -> list[str]:
    """The lines :meth:`Graph.pformat` and :meth:`DiGraph.pformat` share."""
    lines = [
        f"Name: {graph.name}",
        f"Type: {type(graph).__name__}",
        f"Frozen: {nx.is_frozen(graph)}",
        f"Density: {nx.density(graph):0.3f}",
        f"Nodes: {graph.number_of_nodes()}",
    ]
    for node, data in graph.nodes(data=True):
        lines.append(f"  - {node} ({data})" if data else f"  - {node}")
    lines.append(f"Edges: {graph.number_of_edges()}")
    for u, v, data in graph.edges(data=True):
        lines.append(f"  {u} {edge_notation} {v} ({data})" if data else f"  {u} {edge_notation} {v}")
    return lines


def _export_to_dot(graph: Any) -> str:
    from networkx.drawing import nx_pydot  # needs pydot, only when asked

    return str(nx_pydot.to_pydot(graph).to_string())


class Graph(nx.Graph):  # type: ignore[misc]
    """An undirected graph that can be frozen, printed and exported to dot."""

    def __init__(self, incoming_graph_data: Any = None, name: str = "") -> None:
        super().__init__(incoming_graph_data=incoming_graph_data, name=name)
        self.frozen = False

    def freeze(self) -> Graph:
        """Forbid further changes (networkx raises on any); returns the graph."""
        if not self.frozen:
            nx.freeze(self)
        return self

    def export_to_dot(self) -> str:
        """Return the graph in Graphviz dot format (needs pydot)."""
        return _export_to_dot(self)

    def pformat(self) -> str:
        """Describe the graph: name, type, frozen, density, nodes and edges."""
        return os.linesep.join(_describe(self, "<->"))

    def add_edge(
        self, u: Hashable, v: Hashable, attr_dict: dict[str, Any] | None = None, **attr: Any
    ) -> None:
        """Add the edge ``u - v``; its attributes from ``attr_dict`` or keywords."""
        super().add_edge(u, v, **(attr_dict if attr_dict is not None else attr))

    def add_node(self, n: Hashable, attr_dict: dict[str, Any] | None = None, **attr: Any) -> None:
        """Add node ``n``; its attributes from ``attr_dict`` or keywords."""
        super().add_node(n, **(attr_dict if attr_dict is not None else attr))

    def fresh_copy(self) -> Graph:
        """Return an empty graph of the same kind."""
        return type(self)()


class DiGraph(nx.DiGraph):  # type: ignore[misc]
    """A directed graph that can be frozen, printed, exported and walked backwards."""

    def __init__(self, incoming_graph_data: Any = None, name: str = "") -> None:
        super().__init__(incoming_graph_data=incoming_graph_data, name=name)
        self.frozen = False

    def freeze(self) -> DiGraph:
        """Forbid further changes (networkx raises on any); returns the graph."""
        if not self.frozen:
            nx.freeze(self)
        return self

    def get_edge_data(self, u: Hashable, v: Hashable, default: Any = None) -> Any:
        """Return a *copy* of the attributes of edge ``u -> v`` (``default`` if none)."""
        try:
            return dict(self.adj[u][v])
        except KeyError:
            return default

    def topological_sort(self) -> Iterator[Hashable]:
        """Iterate over the nodes in a topological order."""
        return iter(nx.topological_sort(self))

    def pformat(self) -> str:
        """Describe the graph: name, type, frozen, density, nodes, edges and cycles."""
        lines = _describe(self, "->")
        cycles = list(nx.recursive_simple_cycles(self))
        lines.append(f"Cycles: {len(cycles)}")
        for cycle in cycles:
            lines.append("  " + " --> ".join(str(node) for node in [*cycle, cycle[0]]))
        return os.linesep.join(lines)

    def export_to_dot(self) -> str:
        """Return the graph in Graphviz dot format (needs pydot)."""
        return _export_to_dot(self)

    def is_directed_acyclic(self) -> bool:
        """Tell whether the graph has no cycle."""
        return bool(nx.is_directed_acyclic_graph(self))

    def no_successors_iter(self) -> Iterator[Hashable]:
        """Iterate over the nodes nothing follows."""
        return (node for node in self.nodes if self.out_degree(node) == 0)

    def no_predecessors_iter(self) -> Iterator[Hashable]:
        """Iterate over the nodes nothing precedes."""
        return (node for node in self.nodes if self.in_degree(node) == 0)

    def bfs_predecessors_iter(self, n: Hashable) -> Iterator[Hashable]:
        """Iterate breadth first over every node ``n`` is reachable from, each once."""
        seen = {n}
        queue = collections.deque(self.predecessors(n))
        while queue:
            pred = queue.popleft()
            if pred in seen:
                continue
            seen.add(pred)
            yield pred
            queue.extend(p for p in self.predecessors(pred) if p not in seen)

    def add_edge(
        self, u: Hashable, v: Hashable, attr_dict: dict[str, Any] | None = None, **attr: Any
    ) -> None:
        """Add the edge ``u -> v``; its attributes from ``attr_dict`` or keywords."""
        super().add_edge(u, v, **(attr_dict if attr_dict is not None else attr))

    def add_node(self, n: Hashable, attr_dict: dict[str, Any] | None = None, **attr: Any) -> None:
        """Add node ``n``; its attributes from ``attr_dict`` or keywords."""
        super().add_node(n, **(attr_dict if attr_dict is not None else attr))

    def fresh_copy(self) -> DiGraph:
        """Return an empty graph of the same kind."""
        return type(self)()


class OrderedDiGraph(DiGraph):
    """A :class:`DiGraph` that iterates nodes and edges in insertion order.

    Plain dicts keep insertion order; the class exists for TaskFlow's name.
    """


class OrderedGraph(Graph):
    """A :class:`Graph` that iterates nodes and edges in insertion order."""


def _count_overlaps(to_graph: Any, from_graph: Any) -> int:
    return len(to_graph.subgraph(from_graph.nodes))


def merge_graphs(
    graph: Any,
    *graphs: Any,
    allow_overlaps: bool = False,
    overlap_detector: Callable[[Any, Any], int] | None = None,
) -> Any:
    """Return ``graph`` composed with ``graphs`` (``graph`` itself when there are none).

    Args:
        graph: The first graph; the result keeps its name.
        graphs: Graphs to merge in.
        allow_overlaps: Allow graphs that share nodes (their data is merged).
        overlap_detector: ``(to_graph, from_graph) -> int`` counting shared nodes.

    Raises:
        ValueError: Two graphs share nodes and overlaps are not allowed, or the
            detector is not callable.
    """
    if overlap_detector is not None and not callable(overlap_detector):
        raise ValueError("Overlap detection callback expected to be callable")
    detector = overlap_detector or _count_overlaps
    merged = graph
    for other in graphs:
        if not allow_overlaps:
            overlaps = detector(merged, other)
            if overlaps:
                raise ValueError(
                    f"Can not merge graph {other} into {merged} since there are {overlaps} "
                    "overlapping nodes (and we do not support merging nodes)"
                )
        merged = nx.algorithms.compose(merged, other)
    if graphs:
        merged.name = graph.name
    return merged
