"""Flows run every atom once, in pattern order, and atoms get the right arguments."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.patterns import graph_flow, linear_flow, unordered_flow

from ._tasks import Recorder, Step


def fn(name: str, func: Any, **kwargs: Any) -> task.FunctorTask:
    return task.FunctorTask(func, name=name, **kwargs)


def _collect_x(seen: list[Any]) -> Any:
    """A function requiring ``x`` that keeps what it was given."""

    def use(x: Any) -> None:
        seen.append(x)

    return use


# -- order and results -------------------------------------------------------------------


def test_linear_flow_runs_every_task_once_in_order(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(*(Step(f"t{i}", rec) for i in range(6)))
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert rec.executed() == [f"t{i}" for i in range(6)]
    assert rec.reverted() == []
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_unordered_flow_runs_every_task_once(engine_kind: str, rec: Recorder) -> None:
    flow = unordered_flow.Flow("u").add(*(Step(f"t{i}", rec) for i in range(8)))
    engines.run(flow, engine=engine_kind)
    assert sorted(rec.executed()) == sorted(f"t{i}" for i in range(8))


def test_graph_flow_runs_each_task_after_the_ones_it_is_linked_from(engine_kind: str, rec: Recorder) -> None:
    a, b, c, d = (Step(n, rec) for n in "abcd")
    flow = graph_flow.Flow("g").add(a, b, c, d)
    flow.link(a, b).link(a, c).link(b, d).link(c, d)
    engines.run(flow, engine=engine_kind)
    order = rec.executed()
    assert sorted(order) == ["a", "b", "c", "d"]
    assert order[0] == "a"
    assert order[-1] == "d"


def test_graph_flow_orders_tasks_by_the_symbols_they_share(engine_kind: str) -> None:
    flow = graph_flow.Flow("g").add(
        fn("double", lambda y: y * 2, provides="z"),
        fn("inc", lambda x: x + 1, provides="y"),
        fn("start", lambda: 1, provides="x"),
    )
    assert engines.run(flow, engine=engine_kind) == {"x": 1, "y": 2, "z": 4}


def test_nested_flows_run_in_the_order_of_their_patterns(engine_kind: str, rec: Recorder) -> None:
    inner = linear_flow.Flow("inner").add(Step("i1", rec), Step("i2", rec))
    flow = linear_flow.Flow("outer").add(
        Step("first", rec), unordered_flow.Flow("u").add(inner, Step("side", rec)), Step("last", rec)
    )
    engines.run(flow, engine=engine_kind)
    order = rec.executed()
    assert order[0] == "first"
    assert order[-1] == "last"
    assert order.index("i1") < order.index("i2")
    assert sorted(order) == ["first", "i1", "i2", "last", "side"]


def test_a_single_task_can_be_run_without_a_flow(engine_kind: str, rec: Recorder) -> None:
    assert engines.run(Step("alone", rec, provides="out"), engine=engine_kind) == {"out": "alone"}


def test_results_are_visible_by_symbol_after_the_run(engine_kind: str) -> None:
    flow = linear_flow.Flow("f").add(
        fn("one", lambda: 1, provides="x"), fn("two", lambda x: x + 1, provides="y")
    )
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert engine.storage.fetch("x") == 1
    assert engine.storage.fetch("y") == 2
    assert engine.storage.get("two") == 2


def test_run_returns_everything_the_flow_produced_and_stored(engine_kind: str) -> None:
    flow = linear_flow.Flow("f").add(fn("one", lambda a: a + 1, provides="b"), fn("quiet", lambda b: None))
    assert engines.run(flow, store={"a": 1}, engine=engine_kind) == {"a": 1, "b": 2}


# -- where arguments come from ---------------------------------------------------------------


def test_store_values_are_passed_to_tasks_by_argument_name(engine_kind: str, rec: Recorder) -> None:
    engines.run(Step("t", rec, requires=["x", "y"]), store={"x": 1, "y": "two"}, engine=engine_kind)
    assert rec.details("execute", "t") == [{"x": 1, "y": "two"}]


def test_atom_inject_values_are_given_to_that_atom_only(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(
        Step("a", rec, requires=["x"], inject={"x": "mine"}), Step("b", rec, requires=["x"])
    )
    engines.run(flow, store={"x": "shared"}, engine=engine_kind)
    assert rec.details("execute", "a") == [{"x": "mine"}]
    assert rec.details("execute", "b") == [{"x": "shared"}]


def test_atom_inject_satisfies_a_requirement_nothing_else_provides(engine_kind: str, rec: Recorder) -> None:
    engines.run(Step("a", rec, requires=["x"], inject={"x": 3}), engine=engine_kind)
    assert rec.details("execute", "a") == [{"x": 3}]


def test_load_inject_gives_values_to_the_named_atom(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec, requires=["x"]), Step("b", rec, requires=["x"]))
    engine = engines.load(flow, store={"x": "shared"}, inject={"a": {"x": "for a"}}, engine=engine_kind)
    engine.run()
    assert rec.details("execute", "a") == [{"x": "for a"}]
    assert rec.details("execute", "b") == [{"x": "shared"}]


def test_load_inject_naming_an_unknown_atom_is_not_found() -> None:
    with pytest.raises(exceptions.NotFound, match="nope"):
        engines.load(linear_flow.Flow("f").add(fn("a", lambda: 1)), inject={"nope": {"x": 1}})


def test_rebind_list_renames_required_arguments_in_order(engine_kind: str) -> None:
    seen: list[tuple[int, int]] = []
    flow = fn("t", lambda a, b: seen.append((a, b)), rebind=["x", "y"])
    engines.run(flow, store={"x": 1, "y": 2, "a": 10, "b": 20}, engine=engine_kind)
    assert seen == [(1, 2)]


def test_rebind_dict_maps_arguments_to_symbols(engine_kind: str) -> None:
    seen: list[tuple[int, int]] = []
    flow = fn("t", lambda a, b: seen.append((a, b)), rebind={"a": "y", "b": "x"})
    engines.run(flow, store={"x": 1, "y": 2}, engine=engine_kind)
    assert seen == [(2, 1)]


def test_rebind_reads_another_tasks_result_under_a_new_name(engine_kind: str) -> None:
    flow = linear_flow.Flow("f").add(
        fn("make", lambda: 5, provides="size"),
        fn("use", lambda n: n * 2, rebind={"n": "size"}, provides="out"),
    )
    assert engines.run(flow, engine=engine_kind)["out"] == 10


def test_optional_arguments_get_their_defaults_when_nothing_provides_them(engine_kind: str) -> None:
    seen: list[tuple[int, int]] = []
    engines.run(fn("t", lambda x, y=3: seen.append((x, y))), store={"x": 1}, engine=engine_kind)
    assert seen == [(1, 3)]


def test_optional_arguments_take_a_provided_value_when_there_is_one(engine_kind: str) -> None:
    seen: list[tuple[int, int]] = []
    flow = linear_flow.Flow("f").add(
        fn("p", lambda: 9, provides="y"), fn("t", lambda x, y=3: seen.append((x, y)))
    )
    engines.run(flow, store={"x": 1}, engine=engine_kind)
    assert seen == [(1, 9)]


# -- what results provide --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provides", "result", "expected"),
    [
        ("whole", (1, 2), {"whole": (1, 2)}),
        (("p", "q"), (1, 2), {"p": 1, "q": 2}),
        (["p", "q"], [1, 2, 3], {"p": 1, "q": 2}),
        ({"p", "q"}, {"p": 1, "q": 2, "r": 3}, {"p": 1, "q": 2}),
    ],
    ids=["str", "tuple", "list", "set"],
)
def test_provides_unpacks_the_result_by_its_kind(
    engine_kind: str, provides: Any, result: Any, expected: dict[str, Any]
) -> None:
    assert engines.run(fn("t", lambda: result, provides=provides), engine=engine_kind) == expected


def test_default_provides_tuple_unpacks_the_result_by_position(engine_kind: str) -> None:
    class Pair(task.Task):
        default_provides = ("left", "right")

        def execute(self) -> tuple[str, str]:
            return "L", "R"

    assert engines.run(Pair(), engine=engine_kind) == {"left": "L", "right": "R"}


@pytest.mark.parametrize(
    ("provides", "result"),
    [(("p", "q"), 5), (("p", "q"), (1,)), ({"p", "q"}, {"p": 1}), ({"p"}, [1])],
    ids=["not-indexable", "too-short", "missing-key", "not-a-dict"],
)
def test_a_result_that_cannot_be_unpacked_fails_that_atom_and_reverts_the_flow(
    engine_kind: str, rec: Recorder, provides: Any, result: Any
) -> None:
    flow = linear_flow.Flow("f").add(Step("before", rec), Step("bad", rec, value=result, provides=provides))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(exceptions.ResultUnpackError, match="bad") as info:
        engine.run()
    assert info.value.atom == "bad"
    assert set(info.value.provides) == set(provides)
    assert engine.storage.get_atom_state("bad") == states.REVERTED
    assert rec.reverted() == ["bad", "before"]
    assert engine.storage.get_flow_state() == states.REVERTED


# -- who provides what ---------------------------------------------------------------------


def test_nearest_provider_wins_in_a_linear_flow(engine_kind: str) -> None:
    seen: list[str] = []
    flow = linear_flow.Flow("f").add(
        fn("first", lambda: "early", provides="x"),
        fn("second", lambda: "late", provides="x"),
        fn("use", _collect_x(seen)),
    )
    engines.run(flow, engine=engine_kind)
    assert seen == ["late"]


def test_nearest_provider_wins_across_nested_flows(engine_kind: str) -> None:
    seen: list[str] = []
    flow = linear_flow.Flow("f").add(
        fn("outer", lambda: "outer", provides="x"),
        linear_flow.Flow("inner").add(
            fn("inner", lambda: "inner", provides="x"), fn("use", _collect_x(seen))
        ),
    )
    engines.run(flow, engine=engine_kind)
    assert seen == ["inner"]


def test_store_values_shadow_task_provided_values(engine_kind: str) -> None:
    # TaskFlow semantics: a value injected with store= is found before any atom's result.
    seen: list[str] = []
    flow = linear_flow.Flow("f").add(fn("p", lambda: "from task", provides="x"), fn("use", _collect_x(seen)))
    engines.run(flow, store={"x": "from store"}, engine=engine_kind)
    assert seen == ["from store"]


def test_unordered_siblings_cannot_see_each_others_outputs(rec: Recorder) -> None:
    flow = unordered_flow.Flow("u").add(Step("p", rec, provides="x"), Step("use", rec, requires=["x"]))
    engine = engines.load(flow)
    with pytest.raises(exceptions.MissingDependencies) as info:
        engine.validate()
    assert info.value.atom == "use"
    assert info.value.missing == ["x"]
    with pytest.raises(exceptions.MissingDependencies):
        engine.run()
    assert rec.executed() == []


def test_a_later_flow_sees_what_an_earlier_unordered_flow_provided(engine_kind: str) -> None:
    seen: list[tuple[int, int]] = []
    flow = linear_flow.Flow("f").add(
        unordered_flow.Flow("u").add(fn("a", lambda: 1, provides="x"), fn("b", lambda: 2, provides="y")),
        fn("use", lambda x, y: seen.append((x, y))),
    )
    engines.run(flow, engine=engine_kind)
    assert seen == [(1, 2)]


def test_map_and_reduce_functor_tasks_run_in_a_flow(engine_kind: str) -> None:
    flow = linear_flow.Flow("f").add(
        task.MapFunctorTask(lambda v: v * 2, requires=["a", "b"], provides=["a2", "b2"], name="double"),
        task.ReduceFunctorTask(lambda x, y: x + y, requires=["a2", "b2"], provides="total", name="add"),
    )
    assert engines.run(flow, store={"a": 1, "b": 2}, engine=engine_kind) == {
        "a": 1,
        "b": 2,
        "a2": 2,
        "b2": 4,
        "total": 6,
    }
