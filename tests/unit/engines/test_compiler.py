"""The compiler on its own: the graph, the argument plans and the structural checks it makes."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import exceptions, retry, task
from flowkit import flow as flow_mod
from flowkit.engines import _compiler
from flowkit.engines._compiler import FLOW_END, FLOW_START, RETRY, TASK, compile_flow
from flowkit.patterns import graph_flow, linear_flow, unordered_flow


class Use(task.Task):
    def execute(self, **kwargs: Any) -> None:
        """Never called: only the compiled form is looked at."""


def node(compilation: _compiler.Compilation, name: str) -> _compiler.Node:
    (found,) = [n for n in compilation.nodes if n.name == name]
    return found


def provider_of(compilation: _compiler.Compilation, consumer: str, symbol: str) -> str | None:
    (plan,) = [p for p in node(compilation, consumer).exec_args if p.symbol == symbol]
    return None if plan.provider < 0 else compilation.nodes[plan.provider].name


def test_a_linear_flow_is_a_chain_between_its_start_and_end_nodes() -> None:
    compilation = compile_flow(linear_flow.Flow("f").add(Use("a"), Use("b")))
    kinds = [(n.name, n.kind) for n in compilation.nodes]
    assert kinds == [("f^start", FLOW_START), ("a", TASK), ("b", TASK), ("f^end", FLOW_END)]
    assert [tuple(n.succ) for n in compilation.nodes] == [(1,), (2,), (3,), ()]
    assert isinstance(compilation.order, range)  # creation order is topological
    assert [n.name for n in compilation.atoms] == ["a", "b"]


def test_an_unordered_flow_fans_out_from_its_start_and_in_to_its_end() -> None:
    compilation = compile_flow(unordered_flow.Flow("u").add(Use("a"), Use("b")))
    start, end = node(compilation, "u^start"), node(compilation, "u^end")
    assert sorted(compilation.nodes[i].name for i in start.succ) == ["a", "b"]
    assert sorted(compilation.nodes[i].name for i in end.pred) == ["a", "b"]


def test_each_argument_reads_the_nearest_provider_before_it() -> None:
    flow = linear_flow.Flow("f").add(
        Use("p1", provides="x"), Use("p2", provides="x"), Use("c", requires=["x"]), Use("p3", provides="x")
    )
    compilation = compile_flow(flow)
    assert provider_of(compilation, "c", "x") == "p2"
    assert compilation.open_atoms == []


def test_an_argument_with_no_provider_is_planned_as_injected() -> None:
    compilation = compile_flow(unordered_flow.Flow("u").add(Use("p", provides="x"), Use("c", requires=["x"])))
    assert provider_of(compilation, "c", "x") is None
    assert [n.name for n in compilation.open_atoms] == ["c"]


def test_a_provided_item_records_where_it_sits_in_the_result() -> None:
    flow = linear_flow.Flow("f").add(Use("p", provides=("x", "y")), Use("c", requires=["y"]))
    (plan,) = node(compile_flow(flow), "c").exec_args
    assert (plan.arg, plan.symbol, plan.key, plan.optional) == ("y", "y", 1, False)


def _branches() -> linear_flow.Flow:
    master = linear_flow.Flow("master").add(Use("m", provides="amphora_id"))
    backup = linear_flow.Flow("backup").add(Use("b", provides="amphora_id"))
    pair = unordered_flow.Flow("pair").add(master, backup)
    return linear_flow.Flow("f").add(pair, Use("after", requires=["amphora_id"]))


def test_of_equally_near_providers_the_one_placed_last_is_chosen_as_in_taskflow() -> None:
    assert provider_of(compile_flow(_branches()), "after", "amphora_id") == "b"


def test_strict_compilation_refuses_equally_near_providers() -> None:
    with pytest.raises(exceptions.AmbiguousDependency) as info:
        compile_flow(_branches(), strict=True)
    assert info.value.symbol == "amphora_id"
    assert info.value.atom == "after"
    assert sorted(info.value.providers) == ["backup", "master"]


def test_a_graph_flow_is_searched_in_its_own_order_last_first() -> None:
    p2, p1 = Use("p2", provides="x"), Use("p1", provides="x")
    inner = graph_flow.Flow("g").add(p2, p1).link(p1, p2)
    compilation = compile_flow(linear_flow.Flow("f").add(inner, Use("c", requires=["x"])))
    assert provider_of(compilation, "c", "x") == "p2"
    # Nodes are made in the graph flow's dependency order (p1 first): every edge points forward.
    rank = {index: i for i, index in enumerate(compilation.order)}
    assert all(rank[node.index] < rank[after] for node in compilation.nodes for after in node.succ)
    assert [n.name for n in compilation.atoms] == ["p1", "p2", "c"]


class _LastFirst(flow_mod._OrderedItems):
    """A custom pattern that runs its items last-added first: its links point backwards."""

    def iter_links(self) -> Any:
        items = list(self)
        for later, earlier in zip(items[1:], items, strict=False):
            yield later, earlier, {}

    @property
    def requires(self) -> frozenset[str]:
        return frozenset()


def test_a_pattern_whose_links_point_backwards_is_sorted_and_still_resolved() -> None:
    a, b, c = Use("a", requires=["y"]), Use("b", requires=["z"], provides="y"), Use("c", provides="z")
    compilation = compile_flow(_LastFirst("f").add(a, b, c))
    assert not isinstance(compilation.order, range)  # creation order is not topological here
    names = [compilation.nodes[index].name for index in compilation.order]
    assert names.index("c") < names.index("b") < names.index("a")
    assert provider_of(compilation, "a", "y") == "b"
    assert provider_of(compilation, "b", "z") == "c"


def test_a_graph_flow_provider_reached_only_through_links_is_found() -> None:
    p1, p2, loose = Use("p1", provides="x"), Use("p2", provides="y"), Use("loose", provides="z")
    mid = Use("m")
    consumer = Use("c", requires=["x", "y", "z"])
    flow = graph_flow.Flow("g").add(p1, p2, loose, mid)
    flow.add(consumer, resolve_requires=False)
    flow.link(p1, mid).link(p2, mid).link(mid, consumer)
    compilation = compile_flow(flow)
    assert provider_of(compilation, "c", "x") == "p1"
    assert provider_of(compilation, "c", "y") == "p2"
    # Not linked before the consumer: not visible, so it must be injected.
    assert provider_of(compilation, "c", "z") is None


def test_readers_hanging_off_the_end_of_a_chain_see_the_whole_chain_and_nothing_else() -> None:
    chain = [Use(f"t{i}", provides=f"x{i}") for i in range(5)]
    loose = Use("loose", provides="z")
    readers = [Use(f"r{i}", requires=[f"x{i}", "z"]) for i in range(5)]
    flow = graph_flow.Flow("g").add(*chain, loose, *readers, resolve_requires=False)
    for before, after in zip(chain, chain[1:], strict=False):
        flow.link(before, after)
    for reader in readers:
        flow.link(chain[-1], reader)
    compilation = compile_flow(flow)
    assert [provider_of(compilation, f"r{i}", f"x{i}") for i in range(5)] == [f"t{i}" for i in range(5)]
    assert [provider_of(compilation, f"r{i}", "z") for i in range(5)] == [None] * 5


def test_a_graph_flow_consumer_of_many_providers_sees_each_of_them() -> None:
    leaves = [Use(f"t{i}", provides=f"v{i}") for i in range(50)]
    sink = Use("sink", requires=[f"v{i}" for i in range(50)])
    compilation = compile_flow(graph_flow.Flow("fan-in").add(*leaves, sink))
    assert [provider_of(compilation, "sink", f"v{i}") for i in range(50)] == [f"t{i}" for i in range(50)]


def test_atoms_under_a_retry_know_it_and_the_retry_runs_first() -> None:
    flow = linear_flow.Flow("f", retry=retry.Times(2, "r", provides="n")).add(Use("a", requires=["n"]))
    compilation = compile_flow(flow)
    r, a = node(compilation, "r"), node(compilation, "a")
    assert r.kind == RETRY
    assert a.retry == r.index
    assert a.index in r.succ
    assert provider_of(compilation, "a", "n") == "r"


def test_a_decider_is_attached_to_the_link_it_guards() -> None:
    a, b = Use("a"), Use("b")
    compilation = compile_flow(graph_flow.Flow("g").add(a, b).link(a, b, decider=lambda history: True))
    (edge,) = node(compilation, "b").deciders
    assert compilation.nodes[edge.source].name == "a"


def test_resolve_skips_a_provider_the_run_ignored() -> None:
    flow = linear_flow.Flow("f").add(
        Use("p1", provides="x"), Use("p2", provides="x"), Use("c", requires=["x"])
    )
    compilation = compile_flow(flow)
    p2 = node(compilation, "p2").index
    found = compilation.resolve(node(compilation, "c"), "x", lambda index: index == p2)
    assert compilation.nodes[found].name == "p1"


def test_duplicate_atom_names_are_refused() -> None:
    with pytest.raises(exceptions.Duplicate) as info:
        compile_flow(linear_flow.Flow("f").add(Use("a"), linear_flow.Flow("s").add(Use("a"))))
    assert list(info.value.names) == ["a"]


def test_something_that_is_not_a_flow_or_atom_is_refused() -> None:
    with pytest.raises(exceptions.InvalidFlowItem):
        compile_flow(object())


def test_the_execution_graph_links_atoms_through_flow_boundaries() -> None:
    pytest.importorskip("networkx")
    a, b, c = Use("a"), Use("b"), Use("c")
    flow = linear_flow.Flow("f").add(a, unordered_flow.Flow("u").add(b), c)
    graph = compile_flow(flow).execution_graph
    assert set(graph.nodes) == {a, b, c}
    assert set(graph.edges) == {(a, b), (b, c)}
    assert graph.nodes[a]["kind"] == "task"


def test_a_retry_cannot_run_on_its_own_as_in_taskflow() -> None:
    with pytest.raises(TypeError, match="retry='r'|retry 'r'"):
        compile_flow(retry.Times(2, "r"))


def test_a_single_atom_compiles_into_a_flow_of_its_own() -> None:
    compilation = compile_flow(Use("solo"))
    assert [n.name for n in compilation.atoms] == ["solo"]
    assert len(compilation.nodes) == 3
