"""The engine checks declared types between providers and consumers before running."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from flowkit import dynamic, engines, exceptions, task
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.persistence import backends
from tests.typed._tasks import RAN, MakeNumber, MakeText


class MakePair(task.Task):
    default_provides = ("first", "second")

    def execute(self) -> tuple[int, str]:
        return 1, "a"


class MakeLabels(task.Task):
    default_provides = ("first", "second")

    def execute(self) -> list[str]:
        return ["a", "b"]


class NeedsFloat(task.Task):
    def execute(self, value: float) -> float:
        RAN.append(self.name)
        return value


class NeedsInt(task.Task):
    def execute(self, second: int) -> int:
        return second


class Untyped(task.Task):
    default_provides = "value"

    def execute(self):  # type: ignore[no-untyped-def]
        return "anything"


@pytest.mark.parametrize("option", ["check_types", "strict"])
def test_a_mismatch_is_raised_before_anything_runs_naming_both_atoms_and_the_symbol(option: str) -> None:
    RAN.clear()
    flow = linear_flow.Flow("f").add(MakeText("maker"), NeedsFloat("user"))
    with pytest.raises(exceptions.TypeMismatch) as err:
        engines.run(flow, **{option: True})
    assert (err.value.provider, err.value.consumer, err.value.symbol) == ("maker", "user", "value")
    assert (err.value.provided, err.value.required) == ("str", "float")
    assert "atom 'user' requires 'value'" in str(err.value)
    assert isinstance(err.value, exceptions.DependencyFailure)
    assert RAN == []


def test_compatible_types_and_untyped_providers_run() -> None:
    assert engines.run(linear_flow.Flow("f").add(MakeNumber("m"), NeedsFloat("u")))["value"] == 1
    assert engines.run(graph_flow.Flow("g").add(Untyped("m"), NeedsFloat("u")))["value"] == "anything"


def test_items_of_a_tuple_result_are_checked_by_position() -> None:
    with pytest.raises(exceptions.TypeMismatch, match="'second'"):
        engines.load(linear_flow.Flow("f").add(MakePair("p"), NeedsInt("n")), check_types=True).compile()


def test_items_of_a_list_result_are_checked_as_its_item_type() -> None:
    # ``provides=("first", "second")`` of a ``-> list[str]``: each is a str, as
    # a tuple's positions were typed; the list's items went unchecked.
    with pytest.raises(exceptions.TypeMismatch, match="'second'.* as int, .* as str"):
        engines.load(linear_flow.Flow("f").add(MakeLabels("p"), NeedsInt("n")), check_types=True).compile()


def test_the_check_can_be_turned_off() -> None:
    engine = engines.load(linear_flow.Flow("f").add(MakeText("m"), NeedsFloat("u")), check_types=False)
    engine.run()
    assert engine.storage.fetch("value") == "text"


def test_by_default_a_mismatch_is_a_warning_and_the_flow_runs_as_in_taskflow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # TaskFlow reads no annotations: a flow whose annotations contradict each other
    # (here a str fed to a float) runs there, and must not be refused by default.
    RAN.clear()
    flow = linear_flow.Flow("f").add(MakeText("maker"), NeedsFloat("user"))
    with caplog.at_level("WARNING", logger="flowkit"):
        assert engines.run(flow)["value"] == "text"
    assert RAN == ["maker", "user"]
    warned = [r.getMessage() for r in caplog.records if "requires 'value'" in r.getMessage()]
    assert warned == [
        "flow 'f': atom 'user' requires 'value' (argument 'value') as float, but atom 'maker' "
        "provides it as str; running it anyway, as TaskFlow would (check_types=True or strict=True "
        "refuses it)"
    ]
    assert {r.levelname for r in caplog.records if "requires 'value'" in r.getMessage()} == {"WARNING"}


def test_strict_refusal_can_be_lifted_by_check_types_false() -> None:
    flow = linear_flow.Flow("f").add(MakeText("maker"), NeedsFloat("user"))
    assert engines.run(flow, strict=True, check_types=False)["value"] == "text"


def test_many_mismatches_are_warned_of_ten_at_a_time(caplog: pytest.LogCaptureFixture) -> None:
    makers = [MakeText(f"m{i}", provides=f"v{i}") for i in range(25)]
    users = [NeedsFloat(f"u{i}", rebind={"value": f"v{i}"}, provides=f"o{i}") for i in range(25)]
    with caplog.at_level("WARNING", logger="flowkit"):
        engines.load(graph_flow.Flow("g").add(*makers, *users)).compile()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("running it anyway" in m for m in messages) == 10
    assert "flow 'g': 15 more type mismatches not shown" in messages


class Half(task.Task):
    def execute(self, number: int) -> float:
        return number / 2


class SpawnHalves(task.Task):
    """Annotated as what ``execute`` returns (a type checker insists): a sub-flow."""

    default_provides = "value"

    def execute(self) -> dynamic.Subflow:
        return dynamic.subflow(
            unordered_flow.Flow("halves").add(*(Half(f"half-{n}", inject={"number": n}) for n in (1, 3)))
        )


class SpawnHalvesOrNot(SpawnHalves):
    def execute(self) -> dynamic.Subflow | None:
        return super().execute()


class NeedsFloats(task.Task):
    def execute(self, value: list[float]) -> float:
        return sum(value)


@pytest.mark.parametrize("spawner", [SpawnHalves, SpawnHalvesOrNot])
def test_a_spawner_declared_as_returning_a_subflow_is_not_checked_as_providing_one(spawner: type) -> None:
    # What the spawner provides is its sub-flow's results, which its annotation
    # does not say: the check cannot be certain of a mismatch, so it accepts.
    flow = linear_flow.Flow("f").add(spawner("spawner"), NeedsFloats("sum", provides="total"))
    assert engines.run(flow)["total"] == 2.0


class IsHeavy(task.Task):
    default_provides = "value"

    def execute(self) -> bool:
        return True


def test_a_bool_satisfies_float_as_an_int_does_in_type_checkers() -> None:
    # bool is a subclass of int, and int is accepted where float is: a type
    # checker accepts a bool for a float, so the flow is not miswired.
    flow = linear_flow.Flow("f").add(IsHeavy("heavy"), NeedsFloat("weight", provides="weight"))
    assert engines.run(flow)["weight"] is True


SHADOWS = {
    "the consumer's own inject": ({"value": 2.5}, {}),
    "engines.load's inject=": (None, {"inject": {"user": {"value": 2.5}}}),
    "store=": (None, {"store": {"value": 2.5}}),
}


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "sqlite"])
@pytest.mark.parametrize("shadow", list(SHADOWS))
def test_a_provider_whose_value_an_injected_one_replaces_is_not_checked(
    shadow: str, durable: bool, tmp_path: Path
) -> None:
    # An injected value wins over the provider's result (as in TaskFlow), so
    # the provider's type says nothing about what the consumer gets.
    own, kwargs = SHADOWS[shadow]

    def make_flow() -> linear_flow.Flow:
        return linear_flow.Flow("f").add(MakeText("maker"), NeedsFloat("user", provides="out", inject=own))

    backend = None
    if durable:
        backend = backends.fetch({"connection": f"sqlite:///{tmp_path / 'runs.db'}"})
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        kwargs = {**kwargs, "backend": backend}
    try:
        engine = engines.load(make_flow(), **kwargs)
        engine.run()
        assert engine.storage.fetch("out") == 2.5
        if backend is not None:
            # Loaded again as a resume loads it: the injected value is still there.
            engines.load(make_flow(), flow_detail=engine.storage.flow_detail, backend=backend).compile()
    finally:
        if backend is not None:
            backend.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"inject": {"maker": {"value": 2.5}}}, {"store": {"other": 2.5}}, {"inject": {"user": {"other": 1}}}],
    ids=["another atom's inject", "another symbol in the store", "another symbol injected"],
)
def test_a_value_injected_elsewhere_leaves_the_check_on(kwargs: dict[str, Any]) -> None:
    flow = linear_flow.Flow("f").add(MakeText("maker"), NeedsFloat("user", inject={"other": 1}))
    with pytest.raises(exceptions.TypeMismatch, match="'user' requires 'value'"):
        engines.load(flow, check_types=True, **kwargs).compile()


@pytest.mark.parametrize("option", ["check_types", "validate_types"])
@pytest.mark.parametrize("bad", ["no", "false", 2, 0.0, [False]])
def test_a_type_option_that_is_not_a_bool_is_refused_at_load(option: str, bad: Any) -> None:
    # "no" is true to Python: check_types="no" checked types, validate_types="no"
    # was ignored; either way the run did something else than the words say.
    RAN.clear()
    with pytest.raises(exceptions.InvalidEngineOption, match=option) as err:
        engines.load(linear_flow.Flow("f").add(MakeNumber("m"), NeedsFloat("u")), **{option: bad})
    assert err.value.option == option
    assert RAN == []


@pytest.mark.parametrize("text", ["false", "no", "0"])
def test_a_type_option_written_in_an_engine_uri_turns_the_check_off(text: str) -> None:
    engine = engines.load(
        linear_flow.Flow("f").add(MakeText("m"), NeedsFloat("u")), engine=f"serial://?check_types={text}"
    )
    engine.run()
    assert engine.storage.fetch("value") == "text"


def test_validate_types_written_as_1_in_an_engine_uri_validates() -> None:
    class Lies(task.Task):
        def execute(self) -> int:
            return "not an int"  # type: ignore[return-value]

    with pytest.raises(exceptions.InvalidResult):
        engines.run(Lies("lies"), engine="serial://?validate_types=1")
