"""A big graph's summary (``flowkit.monitor._summary``), from shapes made here."""

from __future__ import annotations

from flowkit.monitor._layout import GraphShape
from flowkit.monitor._summary import GROUP_NODES, MAX_GROUPS, summarize


def _flows(count: int, size: int) -> GraphShape:
    """``count`` sub-flows ``f0``.. of ``size`` chained atoms each, side by side (no edge between them)."""
    nodes = tuple(
        {"id": f"f{k}-{i}", "kind": "task", "flow": f"f{k}"} for k in range(count) for i in range(size)
    )
    edges = tuple((f"f{k}-{i}", f"f{k}-{i + 1}", None) for k in range(count) for i in range(size - 1))
    return GraphShape(nodes, edges)


def test_many_small_sub_flows_share_groups_named_by_their_first_and_last() -> None:
    # 1,000 sub-flows of 3 atoms each made 1,000 groups: a summary no easier to draw or read.
    summary = summarize(_flows(1000, 3))
    assert len(summary.groups) <= MAX_GROUPS
    assert all(len(g.atoms) <= GROUP_NODES for g in summary.groups)
    first = summary.groups[0]
    assert first.label.startswith("f0 \u2026 ") and first.label.endswith(" flows)")
    assert sorted(a for g in summary.groups for a in g.atoms) == sorted(n["id"] for n in summary.shape.nodes)


def test_a_sub_flow_listed_after_its_successors_still_gives_groups_linked_forward() -> None:
    # Groups follow a topological order, not the listed one: a link back would make a cycle
    # the layout cannot place.
    shape = _flows(2, 300)
    swapped = GraphShape(shape.nodes[300:] + shape.nodes[:300], (*shape.edges, ("f0-299", "f1-0", None)))
    summary = summarize(swapped)
    order = {g.id: i for i, g in enumerate(summary.groups)}
    assert [g.label for g in summary.groups] == ["f0 (1/2)", "f0 (2/2)", "f1 (1/2)", "f1 (2/2)"]
    assert all(order[u] < order[v] for u, v in summary.edges)
    assert summary.part("f1-0") is not None and summary.part("f1-1") is None


def test_nodes_without_a_scope_are_grouped_by_their_flows_name() -> None:
    # A shape stored before nodes carried their flow's identity (or learned from the event log)
    # still groups by name; with it, two flows of one name are two groups.
    shape = _flows(2, 300)
    renamed = tuple({**n, "flow": "same"} for n in shape.nodes)
    assert [g.label for g in summarize(GraphShape(renamed, shape.edges)).groups] == [
        "same (1/3)",
        "same (2/3)",
        "same (3/3)",
    ]
    scoped = tuple({**n, "scope": n["id"].split("-")[0]} for n in renamed)
    groups = summarize(GraphShape(scoped, shape.edges)).groups
    assert [g.id for g in groups] == ["f0-0", "f0-150", "f1-0", "f1-150"]  # each flow in two pieces
