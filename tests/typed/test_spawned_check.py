"""The engine's type check covers a spawned sub-flow as it is spliced in, before any of its tasks runs."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import dynamic, engines, exceptions, task
from flowkit.patterns import linear_flow
from tests.typed._tasks import RAN, MakeNumber, MakeText

ENGINES = ["serial", "parallel"]


class NeedsFloat(task.Task):
    """Declares a float; gives back what it got (a str, where a mismatch ran)."""

    default_provides = "seen"

    def execute(self, value: float) -> float:
        RAN.append(self.name)
        return value


class Spawns(task.Task):
    """Spawns the flow its ``make`` gives (a sub-flow read at run time, as dynamic flows are)."""

    default_provides = "spawned"

    def __init__(self, name: str, make: Any, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._make = make

    def execute(self) -> dynamic.Subflow:
        RAN.append(self.name)
        return dynamic.subflow(self._make())


def text_then_float() -> linear_flow.Flow:
    """A sub-flow whose own tasks contradict each other: a str fed to a float."""
    return linear_flow.Flow("inner").add(MakeText("maker"), NeedsFloat("user"))


def number_then_float() -> linear_flow.Flow:
    return linear_flow.Flow("inner").add(MakeNumber("maker"), NeedsFloat("user"))


def float_alone() -> linear_flow.Flow:
    return linear_flow.Flow("inner").add(NeedsFloat("user"))


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("option", ["check_types", "strict"])
def test_a_mismatch_inside_a_spawned_sub_flow_fails_the_spawner_before_its_tasks_run(
    engine: str, option: str
) -> None:
    # The check covered the flow loaded up front only: the spawned tasks ran,
    # and "user" got a str for its float.
    flow = linear_flow.Flow("f").add(Spawns("spawner", text_then_float))
    with pytest.raises(exceptions.TypeMismatch) as err:
        engines.run(flow, engine=engine, **{option: True})
    assert (err.value.provider, err.value.consumer, err.value.symbol) == ("maker", "user", "value")
    assert (err.value.provided, err.value.required) == ("str", "float")
    assert RAN == ["spawner"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_spawned_task_fed_by_an_atom_outside_its_sub_flow_is_checked(engine: str) -> None:
    flow = linear_flow.Flow("f").add(MakeText("outer"), Spawns("spawner", float_alone))
    engine_ = engines.load(flow, engine=engine, check_types=True)
    with pytest.raises(exceptions.TypeMismatch) as err:
        engine_.run()
    assert (err.value.provider, err.value.consumer) == ("outer", "user")
    assert RAN == ["outer", "spawner"]
    assert engine_.storage.get_atom_state("spawner") == "REVERTED"
    with pytest.raises(exceptions.NotFound):  # refused before it was spliced in
        engine_.storage.get_atom_state("user")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_spawned_sub_flow_whose_types_fit_runs(engine: str) -> None:
    outer = MakeText("outer", provides="label")  # a str, read by nobody spawned
    flow = linear_flow.Flow("f").add(outer, Spawns("spawner", number_then_float))
    assert engines.run(flow, engine=engine, check_types=True)["spawned"] == [1, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_by_default_a_spawned_mismatch_is_a_warning_and_the_flow_runs_as_in_taskflow(
    engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    flow = linear_flow.Flow("f").add(Spawns("spawner", text_then_float))
    with caplog.at_level("WARNING", logger="flowkit"):
        engines.run(flow, engine=engine)
    assert RAN == ["spawner", "maker", "user"]
    warned = [r.getMessage() for r in caplog.records if "requires 'value'" in r.getMessage()]
    assert warned == [
        "flow 'f': atom 'user' requires 'value' (argument 'value') as float, but atom 'maker' provides "
        "it as str; running it anyway, as TaskFlow would (check_types=True or strict=True refuses it)"
    ]


def test_check_types_false_checks_no_spawn(caplog: pytest.LogCaptureFixture) -> None:
    flow = linear_flow.Flow("f").add(Spawns("spawner", text_then_float))
    with caplog.at_level("WARNING", logger="flowkit"):
        engines.run(flow, strict=True, check_types=False)
    assert RAN == ["spawner", "maker", "user"]
    assert not [r for r in caplog.records if "requires 'value'" in r.getMessage()]


def test_a_spawned_task_given_the_symbol_by_its_own_inject_is_not_checked_against_the_provider() -> None:
    def injected() -> linear_flow.Flow:
        return linear_flow.Flow("inner").add(MakeText("maker"), NeedsFloat("user", inject={"value": 3.0}))

    flow = linear_flow.Flow("f").add(Spawns("spawner", injected))
    assert engines.run(flow, check_types=True)["spawned"] == ["text", 3.0]


def test_a_sub_flow_spawned_again_in_each_round_of_a_loop_is_warned_of_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Each round spawned the same sub-flow and logged the same warnings again,
    # however many rounds ran: the cap on mismatches logged held per spawn only.
    from flowkit.patterns import loop_flow

    rounds = iter([False, False, True])
    loop = loop_flow.Flow(
        "again", Spawns("spawner", text_then_float), until=lambda spawned: next(rounds), max_iterations=3
    )
    with caplog.at_level("WARNING", logger="flowkit"):
        engines.run(linear_flow.Flow("f").add(loop))
    assert RAN.count("user") == 3
    warned = [r.getMessage() for r in caplog.records if "requires 'value'" in r.getMessage()]
    assert len(warned) == 1, warned
