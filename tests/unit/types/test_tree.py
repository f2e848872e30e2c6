"""flowkit.types.tree: building, searching and drawing trees."""

from __future__ import annotations

import pytest

from flowkit.types import tree


def _company() -> tree.Node:
    root = tree.Node("CEO")
    infra = tree.Node("Infra")
    root.add(infra)
    infra.add(tree.Node("Boss"))
    infra[0].add(tree.Node("Me"))
    root.add(tree.Node("Mobile"))
    root.add(tree.Node("Mail"))
    return root


def test_pformat_draws_branches_and_continuations() -> None:
    assert _company().pformat(linesep="\n") == "\n".join(
        ["CEO", "|__Infra", "|  |__Boss", "|     |__Me", "|__Mobile", "|__Mail"]
    )


def test_pformat_prefixes_every_line_and_uses_the_given_labels() -> None:
    root = tree.Node("a")
    root.add(tree.Node("b"))
    drawn = root.pformat(stringify_node=lambda n: n.item.upper(), starting_prefix="> ", linesep="\n")
    assert drawn == "> A\n> |__B"


def test_walks_follow_taskflows_orders() -> None:
    root = _company()
    assert [n.item for n in root] == ["Infra", "Mobile", "Mail"]
    assert [n.item for n in root.reverse_iter()] == ["Mail", "Mobile", "Infra"]
    assert [n.item for n in root.dfs_iter()] == ["Infra", "Boss", "Me", "Mobile", "Mail"]
    assert [n.item for n in root.dfs_iter(right_to_left=False)] == ["Mail", "Mobile", "Infra", "Boss", "Me"]
    breadth_first = ["CEO", "Mail", "Mobile", "Infra", "Boss", "Me"]
    assert [n.item for n in root.bfs_iter(include_self=True)] == breadth_first
    assert [n.item for n in root.bfs_iter(right_to_left=True)] == ["Infra", "Mobile", "Mail", "Boss", "Me"]


def test_counts_paths_and_lookups() -> None:
    root = _company()
    me = root.find("Me")
    assert me is not None
    assert [n.item for n in me.path_iter()] == ["Me", "Boss", "Infra", "CEO"]
    assert [n.item for n in me.path_iter(include_self=False)] == ["Boss", "Infra", "CEO"]
    assert root.child_count() == 3
    assert root.child_count(only_direct=False) == 5
    assert "Boss" in root and "Nobody" not in root
    assert root.find("Boss", only_direct=True) is None
    assert root.index("Mobile") == 1
    assert me.empty() and not root.empty()
    assert root.find_first_match(lambda n: n.item.startswith("M")) is me
    with pytest.raises(ValueError, match="Nobody"):
        root.index("Nobody")


def test_remove_detaches_and_frozen_trees_refuse_changes() -> None:
    root = _company()
    removed = root.remove("Infra")
    assert removed.parent is None
    assert [n.item for n in root] == ["Mobile", "Mail"]
    with pytest.raises(ValueError, match="not found"):
        root.remove("Infra")
    root.freeze()
    assert root[0].frozen
    with pytest.raises(tree.FrozenNode):
        root.add(tree.Node("Sales"))
    with pytest.raises(tree.FrozenNode):
        root[0].disassociate()


def test_metadata_and_to_digraph() -> None:
    pytest.importorskip("networkx")
    root = tree.Node("flow", kind="flow")
    root.add(tree.Node("task", kind="task"))
    graph = root.to_digraph()
    assert list(graph.edges) == [("flow", "task")]
    assert graph.nodes["task"] == {"kind": "task"}
