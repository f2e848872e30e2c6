"""Flows in general, and the linear and unordered patterns."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, flow, retry, task
from flowkit import exceptions as exc
from flowkit.patterns import graph_flow, linear_flow, unordered_flow

PATTERNS = [linear_flow.Flow, unordered_flow.Flow, graph_flow.Flow]


class T(task.Task):
    def execute(self, **kwargs: Any) -> None:
        return None


def make(name: str, requires: list[str] | None = None, provides: list[str] | str | None = None) -> T:
    return T(name=name, requires=requires, provides=provides)


# -- module constants ------------------------------------------------------------


def test_link_constants_have_taskflow_values() -> None:
    assert flow.LINK_INVARIANT == "invariant"
    assert flow.LINK_MANUAL == "manual"
    assert flow.LINK_RETRY == "retry"
    assert flow.LINK_REASONS == "reasons"
    assert flow.LINK_DECIDER == "decider"
    assert flow.LINK_DECIDER_DEPTH == "decider_depth"


def test_base_flow_is_abstract() -> None:
    with pytest.raises(TypeError):
        flow.Flow("f")  # type: ignore[abstract]


# -- what every pattern shares -----------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_add_returns_the_flow_and_keeps_insertion_order(pattern: type[flow.Flow]) -> None:
    a, b, c = make("a"), make("b"), make("c")
    f = pattern("f")
    assert f.add(a, b) is f
    f.add(c)
    assert len(f) == 3
    assert list(f) == [a, b, c]
    assert [node for node, _meta in f.iter_nodes()] == [a, b, c]
    assert all(meta == {} for _node, meta in f.iter_nodes())


@pytest.mark.parametrize("pattern", PATTERNS)
def test_adding_an_item_twice_keeps_one(pattern: type[flow.Flow]) -> None:
    a = make("a")
    f = pattern("f").add(a, a)
    f.add(a)
    assert list(f) == [a]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_name_and_retry_are_exposed(pattern: type[flow.Flow]) -> None:
    r = retry.Times(2, name="r")
    f = pattern(123, retry=r)  # type: ignore[arg-type]
    assert f.name == "123"
    assert f.retry is r
    assert pattern("g").retry is None


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("bad", [object(), "task", 3, None, lambda: 1])
def test_adding_a_non_atom_raises_invalid_flow_item(pattern: type[flow.Flow], bad: object) -> None:
    good = make("good")
    f = pattern("f")
    with pytest.raises(exc.InvalidFlowItem) as info:
        f.add(good, bad)  # type: ignore[arg-type]
    assert info.value.flow == "f"
    assert info.value.item is bad
    assert "'f'" in str(info.value)
    assert isinstance(info.value, TypeError)
    # Nothing of a rejected add is kept.
    assert len(f) == 0


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_retry_added_as_an_item_is_refused_when_the_flow_is_compiled(pattern: type[flow.Flow]) -> None:
    # TaskFlow accepts the add and raises TypeError when the engine compiles the flow.
    f = pattern("f").add(retry.AlwaysRevert(name="r"))
    engine = engines.load(f)
    with pytest.raises(exc.InvalidFlowItem, match="retry=") as info:
        engine.run()
    assert isinstance(info.value, TypeError) and info.value.item is list(f)[0]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_flow_cannot_contain_itself(pattern: type[flow.Flow]) -> None:
    f = pattern("f")
    with pytest.raises(exc.InvalidFlowItem, match="itself"):
        f.add(f)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_retry_must_be_an_atom(pattern: type[flow.Flow]) -> None:
    with pytest.raises(exc.InvalidFlowItem) as info:
        pattern("f", retry=object())  # type: ignore[arg-type]
    assert info.value.flow == "f"
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_task_as_retry_is_refused_when_compiled_as_in_taskflow(pattern: type[flow.Flow]) -> None:
    from flowkit import engines

    f = pattern("f", retry=make("not-a-retry", requires=["x"], provides="x"))  # type: ignore[arg-type]
    assert f.requires == frozenset({"x"}) and f.provides == frozenset({"x"})
    with pytest.raises(exc.InvalidFlowItem, match="not a Retry") as info:
        engines.load(f).compile()
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_flows_nest(pattern: type[flow.Flow]) -> None:
    inner = linear_flow.Flow("inner").add(make("a", provides="x"))
    outer = pattern("outer").add(inner, make("b", requires=["y"]))
    assert list(outer)[0] is inner
    assert outer.provides == frozenset({"x"})
    assert outer.requires == frozenset({"y"})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_provides_is_everything_the_retry_and_items_provide(pattern: type[flow.Flow]) -> None:
    r = retry.Times(2, name="r", provides="attempt")
    f = pattern("f", retry=r).add(make("a", provides=["x", "y"]), make("b", provides="z"))
    assert f.provides == frozenset({"attempt", "x", "y", "z"})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_retry_requirements_are_flow_requirements(pattern: type[flow.Flow]) -> None:
    r = retry.AlwaysRevert(name="r", requires=["x", "y"], provides=["a", "b"])
    f = pattern("f", retry=r)
    assert f.requires == frozenset({"x", "y"})
    assert f.provides == frozenset({"a", "b"})
    f.add(make("t", requires=["a", "x", "c"], provides="z"))
    assert f.requires == frozenset({"x", "y", "c"})
    assert f.provides == frozenset({"a", "b", "z"})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_str_and_repr_name_the_pattern(pattern: type[flow.Flow]) -> None:
    f = pattern("f", retry=retry.Times(name="r")).add(make("a"))
    module = pattern.__module__.rsplit(".", 1)[-1]
    assert str(f) == f'"{module}.{pattern.__name__}: f(len=1)"'
    assert repr(f) == f"<{module}.{pattern.__name__} 'f' len=1 retry='r'>"


# -- retry collisions -------------------------------------------------------------


@pytest.mark.parametrize("pattern", PATTERNS)
def test_an_item_may_provide_what_the_retry_provides(pattern: type[flow.Flow]) -> None:
    # As in TaskFlow: both are providers; which one a consumer reads is the engine's choice.
    f = pattern("f", retry=retry.Times(name="r", provides="x"))
    f.add(make("t", provides="x"))
    assert len(f) == 1
    assert f.provides == frozenset({"x"})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_subflow_may_shadow_what_the_retry_provides(pattern: type[flow.Flow]) -> None:
    # A nested flow is a nearer scope: its providers (or its own retry) shadow the outer retry.
    inner = linear_flow.Flow("inner", retry=retry.Times(name="inner-r", provides="x"))
    inner.add(make("t", provides="y"))
    f = pattern("f", retry=retry.Times(name="r", provides="x"))
    f.add(inner)
    assert list(f) == [inner]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_retry_may_require_what_an_item_provides(pattern: type[flow.Flow]) -> None:
    # As in TaskFlow: the retry runs before its items, so the value must come from
    # outside the flow; the flow still requires it, and validation says so if nobody gives it.
    f = pattern("f", retry=retry.AlwaysRevert(name="r", requires=["x"]))
    f.add(make("t", provides="x"))
    assert f.requires == frozenset({"x"})
    assert f.provides == frozenset({"x"})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_retry_and_items_without_shared_symbols_are_fine(pattern: type[flow.Flow]) -> None:
    f = pattern("f", retry=retry.Times(name="r", provides="attempt", requires=["seed"]))
    f.add(make("t", requires=["attempt", "seed"], provides="out"))
    assert f.requires == frozenset({"seed"})


# -- linear flow -----------------------------------------------------------------


def test_linear_flow_links_each_item_to_the_previous() -> None:
    a, b, c = make("a"), make("b"), make("c")
    f = linear_flow.Flow("f").add(a, b, c)
    assert list(f.iter_links()) == [
        (a, b, {flow.LINK_INVARIANT: True}),
        (b, c, {flow.LINK_INVARIANT: True}),
    ]


def test_linear_flow_with_one_item_has_no_links() -> None:
    assert list(linear_flow.Flow("f").add(make("a")).iter_links()) == []


def test_linear_flow_items_see_what_earlier_items_provide() -> None:
    f = linear_flow.Flow("f").add(make("a", provides="x"), make("b", requires=["x"], provides="y"))
    assert f.requires == frozenset()


def test_linear_flow_items_do_not_see_what_later_items_provide() -> None:
    f = linear_flow.Flow("f").add(make("b", requires=["x"]), make("a", provides="x"))
    assert f.requires == frozenset({"x"})


def test_linear_flow_retry_provides_satisfy_items() -> None:
    f = linear_flow.Flow("f", retry=retry.Times(name="r", provides="attempt"))
    f.add(make("a", requires=["attempt"]))
    assert f.requires == frozenset()


def test_linear_flow_nested_flows_chain_their_symbols() -> None:
    first = unordered_flow.Flow("first").add(make("a", provides="x"), make("b", provides="y"))
    second = linear_flow.Flow("second").add(make("c", requires=["x", "y", "z"]))
    f = linear_flow.Flow("f").add(first, second)
    assert f.requires == frozenset({"z"})
    assert list(f.iter_links()) == [(first, second, {flow.LINK_INVARIANT: True})]


def test_linear_flow_links_are_fresh_dicts() -> None:
    f = linear_flow.Flow("f").add(make("a"), make("b"))
    (_u, _v, meta) = next(f.iter_links())
    meta["changed"] = True
    assert next(f.iter_links())[2] == {flow.LINK_INVARIANT: True}


# -- unordered flow --------------------------------------------------------------


def test_unordered_flow_has_no_links() -> None:
    f = unordered_flow.Flow("f").add(make("a", provides="x"), make("b", requires=["x"]))
    assert list(f.iter_links()) == []


def test_unordered_flow_items_cannot_see_each_others_outputs() -> None:
    f = unordered_flow.Flow("f").add(make("a", provides="x"), make("b", requires=["x"]))
    assert f.requires == frozenset({"x"})
    assert f.provides == frozenset({"x"})


def test_unordered_flow_retry_provides_satisfy_items() -> None:
    f = unordered_flow.Flow("f", retry=retry.AlwaysRevert(name="r", provides=["b", "a"]))
    f.add(make("t", requires=["a"]))
    assert f.requires == frozenset()
    assert f.provides == frozenset({"a", "b"})


def test_unordered_flow_items_may_provide_the_same_symbol() -> None:
    f = unordered_flow.Flow("f").add(make("a", provides="x"), make("b", provides="x"))
    assert len(f) == 2
    assert f.provides == frozenset({"x"})


@pytest.mark.parametrize("pattern", [linear_flow.Flow, unordered_flow.Flow], ids=["linear", "unordered"])
def test_a_misuse_names_the_pattern_not_its_private_base(pattern: type[flow.Flow]) -> None:
    # "_OrderedItems.add() got an unexpected keyword argument 'items'": a class
    # no user wrote or can look up in the docs.
    made = pattern("f")
    with pytest.raises(TypeError) as raised:
        made.add(items=[make("a")])  # type: ignore[call-arg]
    assert str(raised.value) == "Flow.add() got an unexpected keyword argument 'items'"
    with pytest.raises(TypeError) as raised:
        pattern()  # type: ignore[call-arg]
    assert str(raised.value) == "Flow.__init__() missing 1 required positional argument: 'name'"
    with pytest.raises(TypeError) as raised:
        made.iter_nodes(1)  # type: ignore[call-arg]
    assert str(raised.value).startswith("Flow.iter_nodes() takes 1 positional argument")
    assert "_OrderedItems" not in repr(made.add)
