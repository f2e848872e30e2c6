"""Graph flows: links inferred from symbols, manual links, cycles, targets, deciders."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import deciders, flow, retry, task
from flowkit import exceptions as exc
from flowkit.patterns import graph_flow, linear_flow


class T(task.Task):
    def execute(self, **kwargs: Any) -> None:
        return None


def make(name: str, requires: list[str] | None = None, provides: list[str] | str | None = None) -> T:
    return T(name=name, requires=requires, provides=provides)


def links(f: flow.Flow) -> list[tuple[str, str, dict[str, Any]]]:
    return [(u.name, v.name, meta) for u, v, meta in f.iter_links()]


def snapshot(f: flow.Flow) -> tuple[list[str], list[tuple[str, str, dict[str, Any]]], frozenset[str]]:
    return [node.name for node in f], links(f), f.requires


def always(history: dict[str, Any]) -> bool:
    return True


# -- links from symbols --------------------------------------------------------------


def test_graph_flow_links_a_provider_to_its_consumer() -> None:
    f = graph_flow.Flow("g").add(make("a", provides="x"), make("b", requires=["x"]))
    assert links(f) == [("a", "b", {flow.LINK_REASONS: {"x"}})]
    assert f.requires == frozenset()


def test_graph_flow_links_an_existing_consumer_to_a_new_provider() -> None:
    f = graph_flow.Flow("g").add(make("b", requires=["x"]))
    assert f.requires == frozenset({"x"})
    f.add(make("a", provides="x"))
    assert links(f) == [("a", "b", {flow.LINK_REASONS: {"x"}})]
    assert f.requires == frozenset()


def test_graph_flow_gathers_every_symbol_of_a_link_as_its_reasons() -> None:
    f = graph_flow.Flow("g").add(make("a", provides=["x", "y"]), make("b", requires=["x", "y"]))
    assert links(f) == [("a", "b", {flow.LINK_REASONS: {"x", "y"}})]


class OwnProvides(T):
    """An atom class that says what it provides by overriding the property."""

    @property  # type: ignore[misc]
    def provides(self) -> frozenset[str]:
        return frozenset({"y"})


def test_graph_flow_links_from_what_provides_says_not_from_save_as() -> None:
    set_later = make("a", provides="x")
    set_later.provides = frozenset({"z"})
    f = graph_flow.Flow("g").add(
        set_later, OwnProvides(name="b", provides="x"), make("c", requires=["z"]), make("d", requires=["y"])
    )
    assert links(f) == [("a", "c", {flow.LINK_REASONS: {"z"}}), ("b", "d", {flow.LINK_REASONS: {"y"}})]


def test_graph_flow_refuses_an_item_after_adding_items_of_known_classes() -> None:
    f = graph_flow.Flow("g").add(make("a", provides="x"))
    with pytest.raises(exc.InvalidFlowItem, match="itself"):
        f.add(make("b"), f)
    with pytest.raises(exc.InvalidFlowItem, match="not 3"):
        f.add(make("c"), 3)  # type: ignore[arg-type]
    assert [node.name for node in f] == ["a"]


def test_graph_flow_resolution_can_be_turned_off() -> None:
    no_requires = graph_flow.Flow("g").add(make("a", provides="x"))
    no_requires.add(make("b", requires=["x"]), resolve_requires=False)
    assert links(no_requires) == []
    no_existing = graph_flow.Flow("g").add(make("b", requires=["x"]))
    no_existing.add(make("a", provides="x"), resolve_existing=False)
    assert links(no_existing) == []


def test_graph_flow_items_without_shared_symbols_are_unlinked() -> None:
    f = graph_flow.Flow("g").add(make("a", provides="x"), make("b", requires=["y"]))
    assert links(f) == []
    assert f.requires == frozenset({"y"})


def test_graph_flow_retry_provides_need_no_link() -> None:
    f = graph_flow.Flow("g", retry=retry.Times(name="r", provides="attempt"))
    f.add(make("a", requires=["attempt"]))
    assert links(f) == []
    assert f.requires == frozenset()


def test_graph_flow_links_nested_flows_by_their_symbols() -> None:
    producer = linear_flow.Flow("producer").add(make("a", provides="x"))
    consumer = linear_flow.Flow("consumer").add(make("b", requires=["x", "z"]))
    f = graph_flow.Flow("g").add(consumer, producer)
    assert links(f) == [("producer", "consumer", {flow.LINK_REASONS: {"x"}})]
    assert f.requires == frozenset({"z"})


def test_graph_flow_sees_what_a_nested_flow_gained_after_being_added() -> None:
    growing = linear_flow.Flow("growing")
    f = graph_flow.Flow("g").add(growing)
    growing.add(make("a", provides="x"))
    f.add(make("b", requires=["x"]))
    assert links(f) == [("growing", "b", {flow.LINK_REASONS: {"x"}})]


def test_graph_flow_requirement_satisfied_further_up_is_not_linked_again() -> None:
    a, b, c = make("a", provides="x"), make("b", requires=["x"], provides="y"), make("c", requires=["y"])
    f = graph_flow.Flow("g").add(a, b, c)
    assert links(f) == [
        ("a", "b", {flow.LINK_REASONS: {"x"}}),
        ("b", "c", {flow.LINK_REASONS: {"y"}}),
    ]


# -- ambiguity -------------------------------------------------------------------


def test_two_providers_of_a_required_symbol_are_ambiguous() -> None:
    f = graph_flow.Flow("g").add(make("p2", provides="x"), make("p1", provides="x"))
    before = snapshot(f)
    with pytest.raises(exc.AmbiguousDependency) as info:
        f.add(make("c", requires=["x"]))
    assert info.value.symbol == "x"
    assert info.value.providers == ("p1", "p2")
    assert info.value.atom == "c"
    assert "'x'" in str(info.value)
    assert snapshot(f) == before


def test_ambiguity_within_one_add_leaves_the_flow_unchanged() -> None:
    f = graph_flow.Flow("g").add(make("first"))
    with pytest.raises(exc.AmbiguousDependency):
        f.add(make("p1", provides="x"), make("p2", provides="x"), make("c", requires=["x"]))
    assert [node.name for node in f] == ["first"]


def test_a_refused_add_leaves_nothing_behind_in_the_symbol_indexes() -> None:
    f = graph_flow.Flow("g").add(make("first"))
    sub = linear_flow.Flow("sub").add(make("s", provides="y"))
    with pytest.raises(exc.AmbiguousDependency):
        f.add(sub, make("p1", provides="x"), make("p2", provides="x"), make("c", requires=["x"]))
    # Neither p1, p2 nor the nested flow provide anything any more; c is not waiting.
    f.add(make("p3", provides="x"), make("c2", requires=["x", "y"]))
    assert links(f) == [("p3", "c2", {flow.LINK_REASONS: {"x"}})]
    f.add(make("c3", provides="c"))
    assert f.requires == frozenset({"y"})


def test_every_provider_of_a_symbol_is_named_however_many() -> None:
    f = graph_flow.Flow("g").add(make("p3", provides="x"), make("p1", provides="x"))
    f.add(make("p2", provides=["x", "w"]))
    with pytest.raises(exc.AmbiguousDependency) as info:
        f.add(make("c", requires=["x"]))
    assert info.value.providers == ("p1", "p2", "p3")


def test_a_refused_add_takes_back_only_its_own_providers_of_a_symbol() -> None:
    f = graph_flow.Flow("g").add(make("p1", provides="x"))
    with pytest.raises(exc.AmbiguousDependency):
        f.add(make("p2", provides="x"), make("p3", provides="x"), make("c", requires=["x"]))
    # p1 is the one provider of x again.
    f.add(make("c2", requires=["x"]))
    assert links(f) == [("p1", "c2", {flow.LINK_REASONS: {"x"}})]


# -- cycles ----------------------------------------------------------------------


def test_symbol_cycle_is_refused_naming_its_nodes_and_changes_nothing() -> None:
    f = graph_flow.Flow("g").add(make("a", requires=["z"], provides="x"))
    before = snapshot(f)
    with pytest.raises(exc.DependencyFailure) as info:
        f.add(make("b", requires=["x"], provides="y"), make("c", requires=["y"], provides="z"))
    message = str(info.value)
    for name in ("'a'", "'b'", "'c'"):
        assert name in message
    assert "cycle" in message
    assert snapshot(f) == before


def test_a_refused_add_can_be_retried_without_the_culprit() -> None:
    f = graph_flow.Flow("g").add(make("a", requires=["y"], provides="x"))
    b = make("b", requires=["x"], provides="y")
    with pytest.raises(exc.DependencyFailure):
        f.add(b)
    f.add(make("b2", requires=["x"]))
    assert links(f) == [("a", "b2", {flow.LINK_REASONS: {"x"}})]


def test_manual_link_closing_a_cycle_is_refused_and_changes_nothing() -> None:
    a, b, c = make("a"), make("b"), make("c")
    f = graph_flow.Flow("g").add(a, b, c).link(a, b).link(b, c)
    before = snapshot(f)
    with pytest.raises(exc.DependencyFailure) as info:
        f.link(c, a)
    assert "'c' -> 'a' -> 'b' -> 'c'" in str(info.value)
    assert snapshot(f) == before


def test_linking_a_node_to_itself_is_a_cycle() -> None:
    a = make("a")
    f = graph_flow.Flow("g").add(a)
    with pytest.raises(exc.DependencyFailure, match="'a' -> 'a'"):
        f.link(a, a)


# -- manual links and deciders ----------------------------------------------------


def test_manual_link_is_marked_manual() -> None:
    a, b = make("a"), make("b")
    f = graph_flow.Flow("g").add(a, b)
    assert f.link(a, b) is f
    assert links(f) == [("a", "b", {flow.LINK_MANUAL: True})]


def test_manual_link_over_a_symbol_link_keeps_the_reasons() -> None:
    a, b = make("a", provides="x"), make("b", requires=["x"])
    f = graph_flow.Flow("g").add(a, b).link(a, b)
    assert links(f) == [("a", "b", {flow.LINK_REASONS: {"x"}, flow.LINK_MANUAL: True})]


def test_link_stores_the_decider_with_depth_all_by_default() -> None:
    a, b = make("a"), make("b")
    f = graph_flow.Flow("g").add(a, b).link(a, b, decider=always)
    (_u, _v, meta) = next(f.iter_links())
    assert meta[flow.LINK_DECIDER] is always
    assert meta[flow.LINK_DECIDER_DEPTH] is deciders.Depth.ALL
    assert meta[flow.LINK_MANUAL] is True


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("atom", deciders.Depth.ATOM),
        ("Flow", deciders.Depth.FLOW),
        (deciders.Depth.NEIGHBORS, deciders.Depth.NEIGHBORS),
    ],
)
def test_link_translates_the_decider_depth(given: Any, expected: deciders.Depth) -> None:
    a, b = make("a"), make("b")
    f = graph_flow.Flow("g").add(a, b).link(a, b, decider=always, decider_depth=given)
    assert next(f.iter_links())[2][flow.LINK_DECIDER_DEPTH] is expected


def test_link_rejects_bad_arguments() -> None:
    a, b, stranger = make("a"), make("b"), make("stranger")
    f = graph_flow.Flow("g").add(a, b)
    with pytest.raises(ValueError, match="stranger"):
        f.link(a, stranger)
    with pytest.raises(ValueError, match="stranger"):
        f.link(stranger, a)
    with pytest.raises(ValueError, match="callable"):
        f.link(a, b, decider="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decider"):
        f.link(a, b, decider_depth="ALL")
    with pytest.raises(ValueError, match="ATOM"):
        f.link(a, b, decider=always, decider_depth="sideways")
    assert links(f) == []


def test_iter_links_gives_copies() -> None:
    f = graph_flow.Flow("g").add(make("a", provides="x"), make("b", requires=["x"]))
    (_u, _v, meta) = next(f.iter_links())
    meta[flow.LINK_REASONS].add("junk")
    meta["junk"] = True
    assert links(f) == [("a", "b", {flow.LINK_REASONS: {"x"}})]


# -- order and size --------------------------------------------------------------


def test_graph_flow_iterates_in_dependency_order_then_insertion_order() -> None:
    consumer = make("consumer", requires=["x"])
    loner = make("loner")
    producer = make("producer", provides="x")
    f = graph_flow.Flow("g").add(consumer, loner, producer)
    assert [node.name for node in f] == ["loner", "producer", "consumer"]
    assert [node.name for node, meta in f.iter_nodes()] == ["loner", "producer", "consumer"]
    assert all(meta == {} for _node, meta in f.iter_nodes())
    assert len(f) == 3


def test_graph_flow_indexes_as_requirers_only_atoms_that_may_still_wait() -> None:
    a, b = make("a", provides="x"), make("b", requires=["x"])
    c, d = make("c", provides="y"), make("d", requires=["x", "y"])
    f = graph_flow.Flow("g").add(a, b)
    assert f._requirers == {}  # b's only requirement was linked from its provider
    f.add(d)
    assert set(f._requirers) == {"x", "y"}  # d still waits for y
    f.add(c, make("a2", provides="x"))
    assert [(u, v) for u, v, _meta in links(f)] == [("a", "b"), ("a", "d"), ("c", "d")]


def test_graph_flow_keeps_a_one_symbol_link_as_its_symbol_until_its_metadata_is_needed() -> None:
    a, b = make("a", provides=["x", "y"]), make("b", requires=["x"])
    f = graph_flow.Flow("g").add(a, b)
    assert f._succ[a][b] == "x"  # no dict and set per link in a big flow
    handed = next(meta for _u, _v, meta in f.iter_links())
    handed[flow.LINK_REASONS].add("z")
    assert links(f) == [("a", "b", {flow.LINK_REASONS: {"x"}})]  # a copy, made each time
    f._add_edge(a, b, reason="y")
    assert f._succ[a][b] is f._pred[b][a]  # one object under both ends
    assert links(f) == [("a", "b", {flow.LINK_REASONS: {"x", "y"}})]


def test_graph_flow_adds_a_symbol_to_a_link_made_by_hand() -> None:
    a, b = make("a", provides="x"), make("b", requires=["x"])
    f = graph_flow.Flow("g").add(b, resolve_requires=False).add(a, resolve_existing=False).link(a, b)
    f._add_edge(a, b, reason="x", check=False)
    assert links(f)[0] == ("a", "b", {flow.LINK_MANUAL: True, flow.LINK_REASONS: {"x"}})


def test_graph_flow_node_metadata_is_each_items_own_and_kept() -> None:
    a, b = make("a", provides="x"), make("b", requires=["x"])
    f = graph_flow.Flow("g").add(a, b)
    first = dict(f.iter_nodes())
    first[a]["note"] = 1
    again = dict(f.iter_nodes())
    assert again[a] == {"note": 1}  # kept with its item, as TaskFlow's graph keeps node data
    assert again[b] == {}  # and no other item's changed


def test_graph_flow_hands_out_no_node_metadata_to_the_compiler() -> None:
    from flowkit import engines

    f = graph_flow.Flow("g").add(make("a", provides="x"), make("b", requires=["x"]))
    engines.load(f).compile()
    assert f._node_meta == {}  # a big flow's atoms get no dict they never show


def test_graph_flow_order_follows_manual_links() -> None:
    a, b, c = make("a"), make("b"), make("c")
    f = graph_flow.Flow("g").add(a, b, c).link(c, a)
    assert [node.name for node in f] == ["b", "c", "a"]


# -- TargetedFlow ----------------------------------------------------------------


def build_targeted() -> tuple[graph_flow.TargetedFlow, dict[str, T]]:
    nodes = {
        "a": make("a", provides="x"),
        "b": make("b", requires=["x", "outside"], provides="y"),
        "c": make("c", requires=["y"]),
        "d": make("d", requires=["x"], provides="w"),
        "e": make("e", requires=["elsewhere"]),
    }
    f = graph_flow.TargetedFlow("tf")
    f.add(*nodes.values())
    return f, nodes


def test_targeted_flow_without_target_shows_everything() -> None:
    f, _nodes = build_targeted()
    assert len(f) == 5
    assert f.requires == frozenset({"outside", "elsewhere"})
    assert f.target is None


def test_targeted_flow_shows_only_the_target_and_its_ancestors() -> None:
    f, nodes = build_targeted()
    f.set_target(nodes["c"])
    assert f.target is nodes["c"]
    assert [node.name for node in f] == ["a", "b", "c"]
    assert len(f) == 3
    assert links(f) == [
        ("a", "b", {flow.LINK_REASONS: {"x"}}),
        ("b", "c", {flow.LINK_REASONS: {"y"}}),
    ]
    assert f.requires == frozenset({"outside"})


def test_targeted_flow_reset_shows_everything_again() -> None:
    f, nodes = build_targeted()
    f.set_target(nodes["a"])
    assert [node.name for node in f] == ["a"]
    f.reset_target()
    assert len(f) == 5


def test_targeted_flow_updates_its_view_after_adds_and_links() -> None:
    f, nodes = build_targeted()
    f.set_target(nodes["c"])
    assert len(f) == 3
    feeder = make("feeds_c")
    f.add(feeder)
    assert "feeds_c" not in [node.name for node in f]
    f.link(feeder, nodes["c"])
    assert "feeds_c" in [node.name for node in f]
    f.link(nodes["e"], nodes["a"])
    assert "e" in [node.name for node in f]


def test_targeted_flow_rejects_an_unknown_target() -> None:
    f, _nodes = build_targeted()
    with pytest.raises(ValueError, match="stranger"):
        f.set_target(make("stranger"))


# -- deciders.Depth ---------------------------------------------------------------


def test_depth_members_have_taskflow_values() -> None:
    assert [depth.value for depth in deciders.Depth] == ["ALL", "FLOW", "NEIGHBORS", "ATOM"]


@pytest.mark.parametrize("text", ["all", "ALL", "All"])
def test_depth_translate_accepts_any_case(text: str) -> None:
    assert deciders.Depth.translate(text) is deciders.Depth.ALL


def test_depth_translate_passes_members_through() -> None:
    assert deciders.Depth.translate(deciders.Depth.ATOM) is deciders.Depth.ATOM


def test_depth_translate_lists_the_choices_for_a_bad_value() -> None:
    with pytest.raises(ValueError, match="'ALL', 'ATOM', 'FLOW', 'NEIGHBORS'"):
        deciders.Depth.translate("deep")
    with pytest.raises(TypeError):
        deciders.Depth.translate(3)  # type: ignore[arg-type]


def test_pick_widest_returns_the_furthest_reaching_depth() -> None:
    depths = deciders.Depth
    assert deciders.pick_widest([depths.ATOM, depths.FLOW, depths.NEIGHBORS]) is depths.FLOW
    assert deciders.pick_widest([depths.ATOM]) is depths.ATOM
    assert deciders.pick_widest(list(depths)) is depths.ALL


# -- nested flows: indexed once, re-read only when they change ------------------------


def _count_symbol_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count reads of ``provides``/``requires`` on linear flows (the nested flows below)."""
    reads = [0]
    for name in ("provides", "requires"):
        original = getattr(linear_flow.Flow, name)

        def counted(self: Any, _original: Any = original) -> frozenset[str]:
            reads[0] += 1
            return _original.fget(self)  # type: ignore[no-any-return]

        monkeypatch.setattr(linear_flow.Flow, name, property(counted))
    return reads


@pytest.mark.parametrize("count", [50, 200])
def test_adding_sub_flows_one_at_a_time_reads_each_one_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    # Each add used to re-read every nested flow already there: count**2 / 2 reads.
    reads = _count_symbol_reads(monkeypatch)
    g = graph_flow.Flow("g")
    for i in range(count):
        step = make(f"t{i}", requires=[f"v{i - 1}"] if i else None, provides=f"v{i}")
        g.add(linear_flow.Flow(f"s{i}").add(step))
    assert reads[0] <= 6 * count  # a few reads per add (the new flow's own), not one per flow there
    assert len(list(g.iter_links())) == count - 1


@pytest.mark.parametrize("count", [50, 200])
def test_atoms_edited_before_being_added_in_sub_flows_re_read_a_bounded_number_of_sub_flows(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    # An edit anywhere used to send every nested flow there to be re-read at the next add.
    reads = _count_symbol_reads(monkeypatch)
    g = graph_flow.Flow("g")
    for i in range(count):
        step = make(f"t{i}", requires=[f"v{i - 1}"] if i else None, provides="unused")
        step.provides = frozenset({f"v{i}"})  # set by hand before it is in any flow
        g.add(linear_flow.Flow(f"s{i}").add(step))
    assert reads[0] <= 6 * count
    assert len(list(g.iter_links())) == count - 1


def test_a_sub_flow_that_grows_after_being_added_is_re_read() -> None:
    inner = linear_flow.Flow("inner")
    middle = linear_flow.Flow("middle").add(inner)
    g = graph_flow.Flow("g").add(middle)
    inner.add(make("late", provides="z"))
    g.add(make("user", requires=["z"]))
    assert links(g) == [("middle", "user", {flow.LINK_REASONS: {"z"}})]
    assert g.requires == frozenset()


def test_a_sub_flow_linked_after_being_added_is_re_read() -> None:
    first, second = make("a", provides="x"), make("b", requires=["x"])
    inner = graph_flow.Flow("inner").add(first, second, resolve_requires=False, resolve_existing=False)
    g = graph_flow.Flow("g").add(inner)
    inner.link(first, second)
    g.add(make("x-maker", provides="x"))
    assert links(g) == []  # inner no longer waits for x: nothing to link


def test_a_nested_tasks_provides_set_by_hand_is_seen_at_the_next_add() -> None:
    step = make("a", provides="x")
    g = graph_flow.Flow("g").add(linear_flow.Flow("sub").add(step))
    step.provides = frozenset({"y"})
    g.add(make("b", requires=["y"]))
    assert links(g) == [("sub", "b", {flow.LINK_REASONS: {"y"}})]


def test_a_sub_flow_of_a_users_class_is_re_read_at_every_add() -> None:
    class Switchable(linear_flow.Flow):
        offered = frozenset({"x"})

        @property
        def provides(self) -> frozenset[str]:
            return self.offered

    sub = Switchable("sub")
    g = graph_flow.Flow("g").add(sub)
    sub.offered = frozenset({"y"})
    g.add(make("b", requires=["y"]))
    assert links(g) == [("sub", "b", {flow.LINK_REASONS: {"y"}})]


def test_requires_walks_no_ancestors_for_a_symbol_nothing_in_the_flow_provides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A chain whose every item also needs "ext" from outside: each item used to walk
    # all the items before it looking for "ext" (count**2 / 2 steps).
    walked = [0]
    original = graph_flow.Flow._ancestors

    def counted(self: graph_flow.Flow, node: Any) -> Any:
        for before in original(self, node):
            walked[0] += 1
            yield before

    monkeypatch.setattr(graph_flow.Flow, "_ancestors", counted)
    count = 300
    g = graph_flow.Flow("g")
    for i in range(count):
        g.add(make(f"t{i}", requires=[f"v{i - 1}", "ext"] if i else ["ext"], provides=f"v{i}"))
    walked[0] = 0
    assert g.requires == frozenset({"ext"})
    assert walked[0] <= count


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_graph_flow_is_told_when_its_copied_sub_flow_grows(how: str) -> None:
    import copy
    import pickle

    g = graph_flow.Flow("g").add(linear_flow.Flow("sub").add(make("a", provides="x")))
    g2 = copy.deepcopy(g) if how == "deepcopy" else pickle.loads(pickle.dumps(g))
    sub2 = next(iter(g2))
    assert isinstance(sub2, linear_flow.Flow)
    sub2.add(make("b", provides="y"))
    g2.add(make("c", requires=["y"]))
    assert links(g2) == [("sub", "c", {flow.LINK_REASONS: {"y"}})]
    assert links(g) == []  # the original is not touched by the copy


# -- atoms edited after being added (TaskFlow reads every item's symbols at each add) ---


def test_an_atoms_provides_set_by_hand_after_it_was_added_is_seen_at_the_next_add() -> None:
    before, after = make("a", provides="x"), make("b")
    g = graph_flow.Flow("g").add(before, after)
    before.provides = frozenset()
    after.provides = frozenset({"x"})
    g.add(make("c", requires=["x"]))
    assert links(g) == [("b", "c", {flow.LINK_REASONS: {"x"}})]
    assert g.requires == frozenset()
    assert g.provides == frozenset({"x"})


def test_an_atoms_requires_set_by_hand_after_it_was_added_is_seen_at_the_next_add() -> None:
    consumer = make("c", requires=["x"])
    g = graph_flow.Flow("g").add(consumer)
    consumer.requires = frozenset({"x", "y"})
    assert g.requires == frozenset({"x", "y"})
    g.add(make("b", provides="y"))
    assert links(g) == [("b", "c", {flow.LINK_REASONS: {"y"}})]
    assert g.requires == frozenset({"x"})


def test_an_atom_whose_provider_stopped_providing_waits_again() -> None:
    provider, consumer = make("a", provides="x"), make("c", requires=["x"])
    g = graph_flow.Flow("g").add(provider, consumer)
    provider.provides = frozenset()
    assert g.requires == frozenset({"x"})
    g.add(make("b", provides="x"))
    assert links(g) == [("a", "c", {flow.LINK_REASONS: {"x"}}), ("b", "c", {flow.LINK_REASONS: {"x"}})]
    assert g.requires == frozenset()


def test_an_atom_whose_nested_provider_stopped_providing_waits_again() -> None:
    provider, consumer = make("a", provides="x"), make("c", requires=["x"])
    g = graph_flow.Flow("g").add(linear_flow.Flow("sub").add(provider), consumer)
    provider.provides = frozenset()
    g.add(make("b", provides="x"))
    assert links(g) == [("sub", "c", {flow.LINK_REASONS: {"x"}}), ("b", "c", {flow.LINK_REASONS: {"x"}})]


def test_a_retry_that_stopped_providing_leaves_its_flows_atoms_waiting() -> None:
    controller = retry.Times(2, provides="x")
    g = graph_flow.Flow("g", retry=controller).add(make("c", requires=["x"]))
    controller.provides = frozenset()
    g.add(make("b", provides="x"))
    assert links(g) == [("b", "c", {flow.LINK_REASONS: {"x"}})]


def test_more_edits_between_two_adds_than_are_kept_re_read_every_atom() -> None:
    provider, consumer = make("a", provides="x"), make("c", requires=["x"])
    g = graph_flow.Flow("g").add(provider, consumer)
    provider.provides = frozenset()
    elsewhere = make("elsewhere")
    for _ in range(1000):  # more than the edits noted for flows to catch up with
        elsewhere.provides = frozenset({"unused"})
    g.add(make("b", provides="x"))
    assert links(g) == [("a", "c", {flow.LINK_REASONS: {"x"}}), ("b", "c", {flow.LINK_REASONS: {"x"}})]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_made_after_an_edit_sees_the_edit(how: str) -> None:
    import copy
    import pickle

    provider, consumer = make("a", provides="x"), make("c", requires=["x"])
    g = graph_flow.Flow("g").add(provider, consumer)
    provider.provides = frozenset()
    g2 = copy.deepcopy(g) if how == "deepcopy" else pickle.loads(pickle.dumps(g))
    g2.add(make("b", provides="x"))
    assert links(g2) == [("a", "c", {flow.LINK_REASONS: {"x"}}), ("b", "c", {flow.LINK_REASONS: {"x"}})]


def test_an_edited_atom_no_longer_lets_the_compiler_trust_link_symbols_as_save_as_names() -> None:
    provider = make("a", provides="x")
    g = graph_flow.Flow("g").add(provider)
    provider.provides = frozenset({"z"})
    g.add(make("c", requires=["z"]))
    numbered = g._numbered_links()
    assert numbered is not None and not numbered.plain
