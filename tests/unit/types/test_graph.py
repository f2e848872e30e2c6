"""flowkit.types.graph: TaskFlow's networkx graph helpers."""

from __future__ import annotations

import pytest

nx = pytest.importorskip("networkx")

from flowkit.types import graph  # noqa: E402 - only once networkx is known to be there


def test_digraph_helpers() -> None:
    g = graph.OrderedDiGraph(name="g")
    g.add_node("a", attr_dict={"kind": "task"})
    g.add_edge("a", "b", weight=1)
    g.add_edge("b", "c")
    assert list(g.no_predecessors_iter()) == ["a"]
    assert list(g.no_successors_iter()) == ["c"]
    assert list(g.bfs_predecessors_iter("c")) == ["b", "a"]
    assert list(g.topological_sort()) == ["a", "b", "c"]
    assert g.is_directed_acyclic()
    data = g.get_edge_data("a", "b")
    data["weight"] = 5
    assert g.get_edge_data("a", "b") == {"weight": 1}
    assert g.get_edge_data("a", "c", default="none") == "none"
    text = g.pformat()
    assert "Name: g" in text and "Type: OrderedDiGraph" in text and "a -> b ({'weight': 1})" in text
    assert "Cycles: 0" in text
    g.add_edge("c", "a")
    assert "a --> b --> c --> a" in g.pformat()
    assert not g.is_directed_acyclic()
    assert isinstance(g.fresh_copy(), graph.OrderedDiGraph) and not g.fresh_copy().nodes


def test_freeze_forbids_changes() -> None:
    g = graph.Graph()
    g.add_edge(1, 2)
    assert g.freeze() is g
    assert g.frozen
    with pytest.raises(nx.NetworkXError):
        g.add_node(3)
    assert "1 <-> 2" in g.pformat()


def test_merge_graphs_refuses_overlaps_unless_allowed() -> None:
    a = graph.DiGraph(name="first")
    a.add_edge(1, 2)
    b = graph.DiGraph(name="second")
    b.add_edge(3, 4)
    merged = graph.merge_graphs(a, b)
    assert set(merged.edges) == {(1, 2), (3, 4)} and merged.name == "first"
    assert graph.merge_graphs(a) is a
    c = graph.DiGraph()
    c.add_edge(2, 5)
    with pytest.raises(ValueError, match="1 overlapping"):
        graph.merge_graphs(a, c)
    assert set(graph.merge_graphs(a, c, allow_overlaps=True).edges) == {(1, 2), (2, 5)}
    assert graph.merge_graphs(a, c, overlap_detector=lambda _to, _from: 0).has_edge(2, 5)
    with pytest.raises(ValueError, match="callable"):
        graph.merge_graphs(a, c, overlap_detector=3)  # type: ignore[arg-type]
