"""When a task fails: the failure is re-raised and everything that ran is reverted."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flowkit import engines, exceptions, states, task
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.types.failure import Failure

from ._tasks import Boom, Recorder, RevertBoom, Step


def test_the_failing_tasks_exception_is_re_raised_with_its_type_and_message(
    engine_kind: str, rec: Recorder
) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Boom("b", rec))
    with pytest.raises(ValueError, match=r"^b failed$"):
        engines.run(flow, engine=engine_kind)


def test_the_re_raised_exception_is_the_one_the_task_raised(engine_kind: str) -> None:
    raised: list[BaseException] = []

    def explode() -> None:
        err = KeyError("mine")
        raised.append(err)
        raise err

    with pytest.raises(KeyError) as info:
        engines.run(task.FunctorTask(explode, name="x"), engine=engine_kind)
    assert info.value is raised[0]


def test_every_atom_that_ran_is_reverted_once_newest_first(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Step("b", rec), Boom("c", rec), Step("never", rec))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.executed() == ["a", "b", "c"]
    assert rec.reverted() == ["c", "b", "a"]
    assert engine.storage.get_flow_state() == states.REVERTED
    for name in "abc":
        assert engine.storage.get_atom_state(name) == states.REVERTED


def test_atoms_that_never_ran_are_not_reverted(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Boom("first", rec), Step("later", rec), Step("last", rec))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="first failed"):
        engine.run()
    assert rec.executed() == ["first"]
    assert rec.reverted() == ["first"]
    assert engine.storage.get_atom_state("later") == states.PENDING
    assert engine.storage.get_atom_state("last") == states.PENDING


def test_the_failed_atom_is_reverted_with_its_failure_as_result(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Boom("b", rec))
    with pytest.raises(ValueError, match="b failed"):
        engines.run(flow, engine=engine_kind)
    (kwargs,) = rec.details("revert", "b")
    assert isinstance(kwargs["result"], Failure)
    assert kwargs["result"].check(ValueError)
    assert kwargs["result"].exception_str == "b failed"


def test_reverted_atoms_get_their_result_and_the_flow_failures(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec, value=41), Boom("b", rec))
    with pytest.raises(ValueError, match="b failed"):
        engines.run(flow, engine=engine_kind)
    (kwargs,) = rec.details("revert", "a")
    assert kwargs["result"] == 41
    failures = kwargs["flow_failures"]
    assert set(failures) == {"b"}
    assert failures["b"].check(ValueError)


def test_revert_gets_the_same_arguments_as_execute(engine_kind: str) -> None:
    seen: list[tuple[str, Any]] = []

    class Uses(task.Task):
        def execute(self, x: int) -> int:
            seen.append(("execute", x))
            return x

        def revert(self, x: int, result: Any, flow_failures: Any) -> None:
            seen.append(("revert", x))

    flow = linear_flow.Flow("f").add(Uses("u"), Boom("b", Recorder()))
    with pytest.raises(ValueError, match="b failed"):
        engines.run(flow, store={"x": 7}, engine=engine_kind)
    assert seen == [("execute", 7), ("revert", 7)]


def test_a_graph_flow_reverts_successors_before_their_predecessors(engine_kind: str, rec: Recorder) -> None:
    a, b, c, d = Step("a", rec), Step("b", rec), Step("c", rec), Boom("d", rec)
    flow = graph_flow.Flow("g").add(a, b, c, d)
    flow.link(a, b).link(a, c).link(b, d).link(c, d)
    with pytest.raises(ValueError, match="d failed"):
        engines.run(flow, engine=engine_kind)
    reverted = rec.reverted()
    assert sorted(reverted) == ["a", "b", "c", "d"]
    assert reverted[0] == "d"
    assert reverted[-1] == "a"


def test_a_failure_in_a_nested_flow_reverts_the_outer_flow_too(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("outer").add(
        Step("a", rec), linear_flow.Flow("inner").add(Step("b", rec), Boom("c", rec)), Step("d", rec)
    )
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.reverted() == ["c", "b", "a"]
    assert engine.storage.get_atom_state("d") == states.PENDING


def test_two_failures_in_parallel_are_raised_together_as_a_wrapped_failure() -> None:
    # Both tasks wait for each other, so both are running when either fails.
    barrier = threading.Barrier(2, timeout=10)

    def fail(name: str) -> Any:
        def run() -> None:
            barrier.wait()
            raise ValueError(f"{name} failed")

        return task.FunctorTask(run, name=name)

    flow = unordered_flow.Flow("u").add(fail("one"), fail("two"))
    engine = engines.load(flow, engine="parallel", max_workers=2)
    with pytest.raises(exceptions.WrappedFailure) as info:
        engine.run()
    assert sorted(f.exception_str for f in info.value) == ["one failed", "two failed"]
    assert info.value.check(ValueError) is ValueError
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("one") == states.REVERTED
    assert engine.storage.get_atom_state("two") == states.REVERTED


def test_a_revert_that_raises_ends_the_flow_in_failure(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), RevertBoom("b", rec), Boom("c", rec))
    engine = engines.load(flow, engine=engine_kind)
    # As TaskFlow: the revert's own exception is raised; the execute failure that
    # started the revert stays in storage.
    with pytest.raises(RuntimeError, match="b revert failed"):
        engine.run()
    assert engine.storage.get_flow_state() == states.FAILURE
    assert engine.storage.get_atom_state("b") == states.REVERT_FAILURE
    assert engine.storage.get_atom_state("c") == states.REVERTED
    # Reverting stops at the failed revert: "a" is left as it was.
    assert engine.storage.get_atom_state("a") == states.SUCCESS
    assert rec.reverted() == ["c", "b"]
    assert engine.storage.get_execute_failures()["c"].exception_str == "c failed"


def test_a_failed_revert_is_stored_as_the_atoms_revert_failure(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(RevertBoom("b", rec), Boom("c", rec))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(RuntimeError):
        engine.run()
    revert_failures = engine.storage.get_revert_failures()
    assert set(revert_failures) == {"b"}
    assert revert_failures["b"].check(RuntimeError)
    assert isinstance(engine.storage.get_revert_result("b"), Failure)
    assert set(engine.storage.get_execute_failures()) == {"c"}


def test_a_task_that_fails_by_itself_reverts_and_re_raises(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(Boom("only", rec), engine=engine_kind)
    with pytest.raises(ValueError, match="only failed"):
        engine.run()
    assert rec.reverted() == ["only"]
    assert engine.storage.get_atom_state("only") == states.REVERTED


class Exits(task.Task):
    def execute(self) -> None:
        raise SystemExit(3)


class Interrupted(task.Task):
    def execute(self) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("raiser", "expected"),
    [(Exits, SystemExit), (Interrupted, KeyboardInterrupt)],
    ids=["SystemExit", "KeyboardInterrupt"],
)
def test_a_base_exception_in_a_task_ends_the_run_instead_of_hanging(
    engine_kind: str, raiser: type, expected: type
) -> None:
    # As on the serial engine, the exception comes out of run(); it must never hang.
    outcome: list[BaseException] = []
    engine = engines.load(linear_flow.Flow("f").add(raiser("x")), engine=engine_kind)

    def run() -> None:
        try:
            engine.run()
        except BaseException as err:
            outcome.append(err)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=5)  # a guard against hanging, not a wait for the result
    assert not runner.is_alive(), "the engine hung"
    assert len(outcome) == 1
    assert isinstance(outcome[0], expected)
    # Stopped, not failed: the flow and the atom in doubt stay RUNNING, as in TaskFlow.
    assert engine.storage.get_flow_state() == states.RUNNING
    assert engine.storage.get_atom_state("x") == states.RUNNING


def test_never_resolve_stops_at_the_first_failure_without_reverting(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Boom("b", rec), Step("c", rec))
    engine = engines.load(flow, engine=engine_kind, never_resolve=True)
    with pytest.raises(ValueError, match="b failed"):
        engine.run()
    assert rec.reverted() == []
    assert engine.storage.get_flow_state() == states.FAILURE
    assert engine.storage.get_atom_state("a") == states.SUCCESS
    assert engine.storage.get_atom_state("b") == states.FAILURE
    assert engine.storage.get_atom_state("c") == states.PENDING
