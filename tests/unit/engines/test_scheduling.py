"""Priority among ready atoms, suspending and resuming, run_iter, reset and running again."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, states
from flowkit.patterns import linear_flow, unordered_flow

from ._tasks import Boom, FailTimes, Recorder, Step


class Suspender(Step):
    """Suspends the engine it is given while it runs."""

    engine: Any = None

    def execute(self, **kwargs: Any) -> Any:
        self.engine.suspend()
        return super().execute(**kwargs)


def _prioritised(rec: Recorder, priorities: dict[str, int]) -> unordered_flow.Flow:
    tasks = []
    for name, priority in priorities.items():
        step = Step(name, rec)
        step.priority = priority
        tasks.append(step)
    return unordered_flow.Flow("u").add(*tasks)


def test_serial_engine_runs_higher_priority_atoms_first(rec: Recorder) -> None:
    flow = _prioritised(rec, {"low": -1, "mid": 0, "high": 5, "top": 10, "mid2": 0})
    engines.run(flow, engine="serial")
    order = rec.executed()
    assert order[:2] == ["top", "high"]
    assert order[-1] == "low"


def test_priority_breaks_ties_between_atoms_ready_at_once_not_dependencies(rec: Recorder) -> None:
    first, second = Step("first", rec), Step("second", rec)
    second.priority = 100
    engines.run(linear_flow.Flow("f").add(first, second), engine="serial")
    assert rec.executed() == ["first", "second"]


# -- suspending ------------------------------------------------------------------------------


def test_suspend_from_a_task_stops_scheduling_and_a_second_run_finishes(
    engine_kind: str, rec: Recorder
) -> None:
    stopper = Suspender("b", rec)
    flow = linear_flow.Flow("f").add(Step("a", rec), stopper, Step("c", rec), Step("d", rec))
    engine = engines.load(flow, engine=engine_kind)
    stopper.engine = engine
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert rec.executed() == ["a", "b"]
    assert engine.storage.get_atom_state("b") == states.SUCCESS
    assert engine.storage.get_atom_state("c") == states.PENDING
    stopper.engine = None  # the second run must not suspend again
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert rec.executed() == ["a", "b", "c", "d"]


def test_suspend_from_a_listener_stops_scheduling(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Step("b", rec), Step("c", rec))
    engine = engines.load(flow, engine=engine_kind)

    def on_state(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "a" and state == states.SUCCESS:
            engine.suspend()

    engine.atom_notifier.register(engine.atom_notifier.ANY, on_state)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert rec.executed() == ["a"]
    engine.atom_notifier.deregister(engine.atom_notifier.ANY, on_state)
    engine.run()
    assert rec.executed() == ["a", "b", "c"]
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_a_suspend_that_comes_as_the_last_revert_finishes_ends_the_run_reverted(
    engine_kind: str, rec: Recorder
) -> None:
    # Nothing is left to do once "a" is reverted: the run ends REVERTED and raises,
    # as TaskFlow's does, rather than SUSPENDED (and silent) with everything undone.
    flow = linear_flow.Flow("f").add(Step("a", rec), Boom("b", rec))
    engine = engines.load(flow, engine=engine_kind)

    def on_state(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "a" and state == states.REVERTED:
            engine.suspend()

    engine.atom_notifier.register(states.REVERTED, on_state)
    with pytest.raises(ValueError, match="b failed"):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    assert rec.reverted() == ["b", "a"]


def test_a_suspend_during_a_revert_with_reverts_left_still_suspends(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Step("b", rec), Boom("c", rec))
    engine = engines.load(flow, engine=engine_kind)

    def on_state(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == "c" and state == states.REVERTED:
            engine.suspend()

    engine.atom_notifier.register(states.REVERTED, on_state)
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert rec.reverted() == ["c"]
    engine.atom_notifier.deregister(states.REVERTED, on_state)
    with pytest.raises(Exception, match="c failed"):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    assert rec.reverted() == ["c", "b", "a"]


def test_a_suspended_parallel_run_lets_running_atoms_finish(rec: Recorder) -> None:
    stopper = Suspender("stop", rec)
    flow = linear_flow.Flow("f").add(
        unordered_flow.Flow("u").add(stopper, Step("sibling", rec)), Step("after", rec)
    )
    engine = engines.load(flow, engine="parallel")
    stopper.engine = engine
    engine.run()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert engine.storage.get_atom_state("after") == states.PENDING
    assert engine.storage.get_atom_state("stop") == states.SUCCESS
    stopper.engine = None
    engine.run()
    assert sorted(rec.executed()) == ["after", "sibling", "stop"]


def test_run_iter_yields_engine_states_ending_in_the_flow_state(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(linear_flow.Flow("f").add(Step("a", rec), Step("b", rec)), engine=engine_kind)
    seen = list(engine.run_iter())
    assert seen[0] == states.RESUMING
    assert seen[-1] == states.SUCCESS
    assert states.SCHEDULING in seen
    assert states.ANALYZING in seen
    assert rec.executed() == ["a", "b"]


def test_run_iter_makes_one_step_per_atom_of_a_chain_even_where_run_chains_them(rec: Recorder) -> None:
    # run() may start a chain of atoms in one step (nobody sees its steps);
    # run_iter() yields every step as TaskFlow's serial engine does.
    def chain() -> linear_flow.Flow:
        return linear_flow.Flow("f").add(Step("a", rec), Step("b", rec), Step("c", rec))

    seen = list(engines.load(chain(), engine="serial").run_iter())
    step = [states.SCHEDULING, states.WAITING, states.ANALYZING]
    assert seen == [states.RESUMING, *step, *step, *step, states.SUCCESS]
    engine = engines.load(chain(), engine="serial")
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert rec.executed() == ["a", "b", "c", "a", "b", "c"]


def test_sending_true_to_run_iter_suspends(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Step("b", rec), Step("c", rec))
    engine = engines.load(flow, engine=engine_kind)
    it = engine.run_iter()
    state = next(it)
    while state != states.SCHEDULING:
        state = next(it)
    rest = [it.send(True), *it]
    assert rest[-1] == states.SUSPENDED
    assert engine.storage.get_flow_state() == states.SUSPENDED
    assert engine.storage.get_atom_state("c") == states.PENDING
    engine.run()
    assert rec.executed() == ["a", "b", "c"]


def test_sending_true_to_run_iter_at_its_first_state_suspends_before_anything_runs(
    engine_kind: str, rec: Recorder
) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Step("b", rec))
    engine = engines.load(flow, engine=engine_kind)
    it = engine.run_iter()
    assert next(it) == states.RESUMING
    rest = [it.send(True), *it]
    assert rest[-1] == states.SUSPENDED
    assert rec.executed() == []
    engine.run()
    assert rec.executed() == ["a", "b"]


def test_closing_run_iter_suspends_the_run(rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Step("b", rec), Step("c", rec))
    engine = engines.load(flow)
    it = engine.run_iter()
    next(it)
    next(it)
    it.close()
    assert engine.storage.get_flow_state() == states.SUSPENDED
    engine.run()
    assert rec.executed() == ["a", "b", "c"]


def test_run_while_running_is_refused(rec: Recorder) -> None:
    from flowkit import exceptions

    class Reenter(Step):
        def execute(self, **kwargs: Any) -> Any:
            with pytest.raises(exceptions.ExecutionFailure):
                self.engine.run()
            return super().execute(**kwargs)

    reenter = Reenter("r", rec)
    engine = engines.load(reenter)
    reenter.engine = engine  # type: ignore[attr-defined]
    engine.run()
    assert rec.executed() == ["r"]


# -- reset and running again ----------------------------------------------------------------


def test_a_reverted_flow_runs_again_from_the_start(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), FailTimes("b", rec, times=1))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="b failed"):
        engine.run()
    assert engine.storage.get_flow_state() == states.REVERTED
    engine.run()
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert rec.executed() == ["a", "b", "a", "b"]


def test_reset_puts_every_atom_back_to_pending(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f").add(Step("a", rec), Step("b", rec))
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    engine.reset()
    assert engine.storage.get_flow_state() == states.PENDING
    assert engine.storage.get_atom_state("a") == states.PENDING
    assert engine.storage.get_atom_state("b") == states.PENDING
    engine.run()
    assert rec.executed() == ["a", "b", "a", "b"]


def test_running_a_finished_flow_again_runs_nothing(rec: Recorder) -> None:
    engine = engines.load(linear_flow.Flow("f").add(Step("a", rec)))
    engine.run()
    engine.run()
    assert rec.executed() == ["a"]
    assert engine.storage.get_flow_state() == states.SUCCESS
