"""Values a task takes through ``**kwargs`` are checked against its annotation like named ones.

A fan-in task declares ``def execute(self, **values: int)`` and is given its
inputs by ``requires`` or ``rebind`` (TaskFlow's "extra arguments": names its
signature does not list). Each value it receives is an ``int`` by its own
declaration, so a provider declared ``-> str`` feeding one is miswired.
Engines pass every value by keyword (as TaskFlow does), so a ``*args``
annotation describes nothing a flow gives.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, exceptions, task, typed
from flowkit.engines._compiler import compile_flow
from flowkit.patterns import graph_flow, linear_flow
from tests.typed._tasks import RAN, MakeNumber, MakeText


class Sum(task.Task):
    default_provides = "total"

    def execute(self, **values: int) -> int:
        RAN.append(self.name)
        return sum(values.values())


class Labelled(task.Task):
    """A named argument keeps its own annotation (or none) beside an annotated ``**values``."""

    default_provides = "total"

    def execute(self, label, note: str = "", **values: int) -> str:  # type: ignore[no-untyped-def]
        return f"{label}{note}={sum(values.values())}"


class Starred(task.Task):
    """``*numbers`` never receives a value: a symbol named like it lands in ``**rest``."""

    default_provides = "seen"

    def execute(self, *numbers: int, **rest: Any) -> dict[str, Any]:
        return {"numbers": numbers, "rest": rest}


def total_of(**values: int) -> int:
    return sum(values.values())


WIRINGS: dict[str, tuple[dict[str, Any], str]] = {
    # How the consumer is given the provider's "value", and the argument it arrives as.
    "requires": ({"requires": ["value"]}, "value"),
    "rebind dict": ({"rebind": {"n": "value"}}, "n"),
    "rebind list": ({"rebind": ["value"]}, "value"),
}


@pytest.mark.parametrize("wiring", sorted(WIRINGS))
def test_a_provider_of_the_wrong_type_feeding_kwargs_is_refused_before_anything_runs(wiring: str) -> None:
    options, argument = WIRINGS[wiring]
    RAN.clear()
    flow = linear_flow.Flow("f").add(MakeText("maker"), Sum("sum", **options))
    with pytest.raises(exceptions.TypeMismatch) as err:
        engines.run(flow, check_types=True)
    assert (err.value.consumer, err.value.provider) == ("sum", "maker")
    assert (err.value.symbol, err.value.argument) == ("value", argument)
    assert (err.value.provided, err.value.required) == ("str", "int")
    assert str(err.value) == (
        f"atom 'sum' requires 'value' (argument '{argument}') as int, but atom 'maker' provides it as str"
    )
    assert RAN == []


def test_the_check_itself_finds_it_whatever_the_engine_asks_first() -> None:
    flow = graph_flow.Flow("g").add(MakeText("maker"), Sum("sum", rebind={"n": "value"}))
    with pytest.raises(exceptions.TypeMismatch, match="argument 'n'"):
        typed.check_compilation(compile_flow(flow))


def test_one_wrong_provider_among_many_right_ones_is_named() -> None:
    makers = [MakeNumber(f"n{i}", provides=f"v{i}") for i in range(50)]
    flow = graph_flow.Flow("g").add(
        *makers, MakeText("odd", provides="v50"), Sum("sum", requires=[f"v{i}" for i in range(51)])
    )
    with pytest.raises(exceptions.TypeMismatch) as err:
        engines.load(flow, check_types=True).compile()
    assert (err.value.provider, err.value.symbol, err.value.argument) == ("odd", "v50", "v50")


def test_a_function_task_taking_kwargs_is_checked_too() -> None:
    flow = linear_flow.Flow("f").add(
        MakeText("maker"), task.FunctorTask(total_of, name="sum", requires=["value"])
    )
    with pytest.raises(exceptions.TypeMismatch, match="atom 'sum' requires 'value'"):
        engines.load(flow, check_types=True).compile()


def test_providers_of_the_declared_type_feed_kwargs_and_run() -> None:
    makers = [MakeNumber(f"n{i}", provides=f"v{i}") for i in range(3)]
    flow = graph_flow.Flow("g").add(*makers, Sum("sum", requires=["v0", "v1", "v2"]))
    assert engines.run(flow)["total"] == 3


def test_a_named_argument_keeps_its_own_annotation_beside_annotated_kwargs() -> None:
    # ``label`` is not annotated and ``note`` is a str: neither is the int of ``**values``.
    flow = linear_flow.Flow("f").add(
        MakeText("label", provides="label"),
        MakeText("note", provides="note"),
        MakeNumber("n"),
        Labelled("sum", requires=["value"]),
    )
    assert engines.run(flow)["total"] == "texttext=1"


def test_an_injected_value_for_kwargs_is_not_checked_against_the_provider() -> None:
    # The injected value wins at run time (as in TaskFlow), as for a named argument.
    flow = linear_flow.Flow("f").add(MakeText("maker"), Sum("sum", requires=["value"], inject={"value": 5}))
    assert engines.run(flow)["total"] == 5


def test_a_symbol_named_like_star_args_goes_to_kwargs_and_is_not_checked_as_one() -> None:
    # Python puts a keyword named ``numbers`` into ``**rest`` (untyped): TaskFlow runs this.
    flow = linear_flow.Flow("f").add(
        MakeText("maker", provides="numbers"), Starred("s", requires=["numbers"])
    )
    assert engines.run(flow)["seen"] == {"numbers": (), "rest": {"numbers": "text"}}


def test_the_contract_says_what_every_argument_name_receives() -> None:
    contract = typed.contract_of(Sum())
    assert dict(contract.inputs) == {}
    assert contract.extra is int
    assert contract.input_type("anything") is int
    assert contract.typed
    labelled = typed.contract_of(Labelled())
    assert dict(labelled.inputs) == {"note": str}
    assert labelled.input_type("label") is typed.UNTYPED
    assert labelled.input_type("note") is str
    assert labelled.input_type("other") is int
    starred = typed.contract_of(Starred())
    assert dict(starred.inputs) == {}
    assert starred.input_type("numbers") is typed.UNTYPED  # into ``**rest: Any``, which takes anything
    assert typed.contract_of(task.FunctorTask(total_of)).input_type("x") is int
    assert typed.Contract({"a": int}, str).input_type("b") is typed.UNTYPED


class TakesAnything(task.Task):
    def execute(self, **values: Any) -> None:
        pass


def test_kwargs_that_take_anything_declare_nothing_to_check() -> None:
    # ``**kwargs: Any`` is how code checked by mypy --strict says "any arguments":
    # no value can mismatch it, so no class of such tasks is looked at per edge.
    contract = typed.contract_of(TakesAnything())
    assert contract.extra is typed.UNTYPED
    assert not contract.declares_inputs
    assert typed.classes_declaring([TakesAnything, Sum], inputs=True) == {Sum}


def test_mappings_given_to_model_typed_kwargs_become_models_at_run_time() -> None:
    pytest.importorskip("pydantic")
    from tests.typed import models

    # As a named ``price: Price`` is: a mapping (a resumed run's JSON, a worker's
    # reply, the store) is made into the model before ``execute``.
    store = {"a": {"amount": 1, "currency": "EUR"}, "b": models.Price(amount=2, currency="USD")}
    kinds = engines.run(models.PriceKinds("kinds", requires=["a", "b"]), store=store)["kinds"]
    assert kinds == {"a": "Price", "b": "Price"}


@pytest.mark.parametrize("validate_types", [None, True])
def test_a_value_that_is_not_the_model_fails_the_atom_naming_the_argument(
    validate_types: bool | None,
) -> None:
    pytest.importorskip("pydantic")
    from tests.typed import models

    atom = models.PriceKinds("kinds", rebind={"first": "a"})
    with pytest.raises(exceptions.InvalidResult) as err:
        engines.run(atom, store={"a": {"amount": "lots"}}, validate_types=validate_types)
    assert (err.value.atom, err.value.what) == ("kinds", "first")
    assert str(err.value).startswith("atom 'kinds' argument 'first' is not tests.typed.models.Price: ")
