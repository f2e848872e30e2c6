"""Run-time validation of results: a bad result fails its atom and the flow reverts."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowkit import dynamic, engines, exceptions, retry, task
from flowkit.patterns import linear_flow

REVERTED: list[str] = []


class First(task.Task):
    default_provides = "first"

    def execute(self) -> int:
        return 1

    def revert(self, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        REVERTED.append(self.name)


class Liar(task.Task):
    default_provides = "number"

    def execute(self, give: Any) -> int:
        return give  # type: ignore[no-any-return]  # the test decides what comes back


def test_a_result_of_the_wrong_type_fails_its_atom_and_the_flow_reverts() -> None:
    REVERTED.clear()
    flow = linear_flow.Flow("f").add(First("first"), Liar("liar"))
    engine = engines.load(flow, store={"give": "not a number"}, validate_types=True)
    with pytest.raises(exceptions.InvalidResult) as err:
        engine.run()
    assert err.value.atom == "liar"
    assert "atom 'liar' returned a result that is not int" in str(err.value)
    assert REVERTED == ["first"]


def test_a_result_of_the_wrong_type_is_said_to_be_wrong_once() -> None:
    with pytest.raises(exceptions.InvalidResult) as err:
        engines.run(Liar("liar"), store={"give": "text"}, validate_types=True)
    # It read the reason twice: once in the message, then again as the TypeError below it.
    assert str(err.value) == "atom 'liar' returned a result that is not int: 'text' (str) is not int"
    assert isinstance(err.value.__cause__, TypeError)  # still chained, for tracebacks


def test_validation_is_off_by_default_for_plain_types() -> None:
    assert engines.run(Liar("liar"), store={"give": "text"})["number"] == "text"


def test_a_task_can_opt_out_of_validation() -> None:
    liar = Liar("liar")
    liar.validate_types = False  # type: ignore[attr-defined]
    assert engines.run(liar, store={"give": "text"}, validate_types=True)["number"] == "text"


def test_pydantic_results_are_validated_by_default_and_mappings_become_models() -> None:
    pytest.importorskip("pydantic")
    from tests.typed import models

    flow = linear_flow.Flow("f").add(models.MakePrice("make"), models.UsePrice("use"))
    results = engines.run(flow, store={"raw": {"amount": "2.5", "currency": "EUR"}})
    assert results["seen"] == "Price 2.5 EUR"
    assert isinstance(results["price"], models.Price)
    with pytest.raises(exceptions.InvalidResult, match="amount"):
        engines.run(flow, store={"raw": {"amount": "lots", "currency": "EUR"}})


def test_one_task_may_opt_in_to_validation_among_many_of_its_class() -> None:
    trusted, checked = Liar("trusted", provides="a"), Liar("checked", provides="b")
    checked.validate_types = True  # type: ignore[attr-defined]
    flow = linear_flow.Flow("f").add(trusted, checked)
    with pytest.raises(exceptions.InvalidResult) as err:
        engines.run(flow, store={"give": "text"})
    assert err.value.atom == "checked"


class RecordedLiar(Liar):
    """A Liar that notes each call: a refused option must stop the run before any."""

    calls: list[str] = []

    def execute(self, give: Any) -> int:
        RecordedLiar.calls.append(self.name)
        return give  # type: ignore[no-any-return]


_ENGINE_OPTIONS = {
    "no other option": {},
    "validate_types=True": {"validate_types": True},
    "validate_types=False": {"validate_types": False},
    "a cache": {"cache": "memory://"},
}


@pytest.mark.parametrize("bad", ["yes", "no", 1, 0, "false"])
@pytest.mark.parametrize("options", list(_ENGINE_OPTIONS), ids=list(_ENGINE_OPTIONS))
@pytest.mark.parametrize("where", ["instance", "class"])
def test_a_tasks_validate_types_that_is_not_a_bool_is_refused_naming_it_before_it_runs(
    bad: Any, options: str, where: str
) -> None:
    # Read as "is it a bool?", validate_types = "yes" was ignored (no validation),
    # and "no" too in a run with validate_types=True, without a word.
    RecordedLiar.calls = []
    if where == "class":
        made: Liar = type("SaysYes", (RecordedLiar,), {"validate_types": bad})("liar")
    else:
        made = RecordedLiar("liar")
        made.validate_types = bad  # type: ignore[attr-defined]
    flow = linear_flow.Flow("f").add(RecordedLiar("before", provides="x"), made)
    with pytest.raises(exceptions.InvalidAtomOption) as err:
        engines.run(flow, store={"give": "text"}, **_ENGINE_OPTIONS[options])
    assert (err.value.atom, err.value.option, err.value.value) == ("liar", "validate_types", bad)
    assert str(err.value).startswith(f"atom 'liar' has validate_types={bad!r}; ")
    assert RecordedLiar.calls == []


class SaysText(retry.Times):
    """A retry declaring an int it does not return: never validated, whatever it sets."""

    def execute(self, history: Any, *args: Any, **kwargs: Any) -> int:
        return "text"  # type: ignore[return-value]  # would fail a validated task


@pytest.mark.parametrize("setting", ["sometimes", 1, True, None])
@pytest.mark.parametrize("options", list(_ENGINE_OPTIONS), ids=list(_ENGINE_OPTIONS))
@pytest.mark.parametrize("where", ["instance", "class"])
def test_a_retrys_validate_types_is_ignored_as_taskflow_ignores_it(
    setting: Any, options: str, where: str
) -> None:
    # Retries are never validated (nor cached): the attribute means nothing to
    # flowkit, and a class ported from TaskFlow may use the name for its own ends.
    # It was refused as a task's is, by the check of the run's first guard.
    if where == "class":
        made: retry.Times = type("Ported", (SaysText,), {"validate_types": setting})(name="r")
    else:
        made = SaysText(name="r")
        made.validate_types = setting  # type: ignore[attr-defined]
    flow = linear_flow.Flow("f", retry=made).add(First("first"))
    engine = engines.load(flow, **_ENGINE_OPTIONS[options])
    engine.run()
    assert engine.storage.get_flow_state() == "SUCCESS"
    assert engine.storage.get("r") == [("text", {})]


def test_a_tasks_validate_types_of_none_leaves_it_to_the_engine() -> None:
    liar = Liar("liar")
    liar.validate_types = None  # type: ignore[attr-defined]
    with pytest.raises(exceptions.InvalidResult):
        engines.run(liar, store={"give": "text"}, validate_types=True)
    assert engines.run(liar, store={"give": "text"})["number"] == "text"


def test_running_annotated_tasks_does_not_import_pydantic() -> None:
    # Only a pydantic model needs pydantic, and one exists only once pydantic is
    # imported: importing it to find out would cost every process a tenth of a second.
    code = (
        "import sys\n"
        "from flowkit import engines, task\n"
        "class T(task.Task):\n"
        "    def execute(self, x: int) -> int:\n"
        "        return x + 1\n"
        "assert engines.run(T(provides='y'), store={'x': 1}, validate_types=True)['y'] == 2\n"
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class _Snapshot(task.Task):
    def execute(self, volume: str) -> str:
        return f"snap-of-{volume}"


class _FanOut(task.Task):
    """Annotated with what its result ends up being: the spawned tasks' results."""

    default_provides = "snapshots"

    def execute(self, volumes: list[str]) -> list[str]:
        from flowkit import dynamic

        spawned = linear_flow.Flow("per-volume").add(
            *[_Snapshot(f"snap-{v}", inject={"volume": v}) for v in volumes]
        )
        return dynamic.subflow(spawned)  # type: ignore[return-value]  # its result comes at the join


def test_a_typed_spawner_is_not_failed_for_the_none_it_holds_while_its_sub_flow_runs() -> None:
    # Validation used to check the placeholder None against "-> list[str]" and fail the spawner.
    results = engines.run(_FanOut(), store={"volumes": ["a", "b"]}, validate_types=True)
    assert results["snapshots"] == ["snap-of-a", "snap-of-b"]


class _SpawnsLiars(task.Task):
    """Spawns one :class:`Liar` (``-> int``) per value, each handed its value to return."""

    default_provides = "told"

    def execute(self, values: list[Any]) -> Any:
        return dynamic.subflow(_liars, values)


def _liars(values: list[Any]) -> linear_flow.Flow:
    return linear_flow.Flow("liars").add(
        *[Liar(f"liar-{i}", provides=f"number-{i}", inject={"give": v}) for i, v in enumerate(values)]
    )


@pytest.mark.parametrize("kind", ["serial", "parallel", "asyncio"])
def test_a_spawned_atoms_result_is_validated_as_one_loaded_up_front(kind: str) -> None:
    # A spawned Liar returning text for "-> int" succeeded with validate_types=True: the
    # engine made its guards once, from the flow loaded up front.
    REVERTED.clear()
    flow = linear_flow.Flow("f").add(First("first"), _SpawnsLiars("spawn"))
    engine = engines.load(flow, store={"values": [1, "two"]}, validate_types=True, engine=kind)
    with pytest.raises(exceptions.InvalidResult) as err:
        engine.run()
    assert err.value.atom == "liar-1"
    assert REVERTED == ["first"]
    assert engines.run(flow, store={"values": [1, 2]}, validate_types=True, engine=kind)["told"] == [1, 2]


def test_a_spawned_atoms_model_argument_and_result_become_models() -> None:
    pytest.importorskip("pydantic")
    from tests.typed import models

    flow = linear_flow.Flow("f").add(_SpawnsPricing("spawn"))
    results = engines.run(flow, store={"raw": {"amount": "2.5", "currency": "EUR"}})
    assert results["seen"] == "Price 2.5 EUR"  # a mapping was handed on, made a Price
    assert isinstance(results["price"], models.Price)
    with pytest.raises(exceptions.InvalidResult, match="amount"):
        engines.run(flow, store={"raw": {"amount": "lots", "currency": "EUR"}})


class _SpawnsPricing(task.Task):
    def execute(self) -> Any:
        return dynamic.subflow(_pricing)


def _pricing() -> linear_flow.Flow:
    from tests.typed import models

    return linear_flow.Flow("pricing").add(models.MakePrice("make"), models.UsePrice("use"))


_SUSPEND: list[Any] = []  # the engine a _SuspendOnce suspends, while the test sets one


class _SuspendOnce(task.Task):
    def execute(self) -> None:
        if _SUSPEND:
            _SUSPEND.pop().suspend()


def _pause_then_lie() -> linear_flow.Flow:
    return linear_flow.Flow("paused").add(_SuspendOnce("pause"), Liar("liar", inject={"give": "two"}))


class _SpawnsPausedLiar(task.Task):
    def execute(self) -> Any:
        return dynamic.subflow(_pause_then_lie)


def test_a_resumed_spawns_atoms_are_validated(tmp_path: Path) -> None:
    from flowkit.persistence import backends

    backend = backends.fetch({"connection": f"sqlite:///{tmp_path}/flows.db"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    try:
        engine = engines.load(_SpawnsPausedLiar("spawn"), backend=backend, validate_types=True)
        _SUSPEND.append(engine)
        engine.run()
        assert engine.storage.get_flow_state() == "SUSPENDED"
        with contextlib.closing(backend.get_connection()) as conn:
            (book,) = conn.get_logbooks()
            (detail,) = list(book)
        # A new engine, as in another process: the spawn is spliced in again from its record.
        resumed = engines.load(
            _SpawnsPausedLiar("spawn"), flow_detail=detail, backend=backend, validate_types=True
        )
        with pytest.raises(exceptions.InvalidResult) as err:
            resumed.run()
        assert err.value.atom == "liar"
    finally:
        _SUSPEND.clear()
        backend.close()
