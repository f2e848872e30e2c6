"""Retries: a failure inside a retried flow is retried, reverted, or reverts everything."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, retry, states, task
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.retry import History

from ._tasks import Boom, FailTimes, Recorder, Step


class Recording(retry.Times):
    """Times, but keeps a copy of the history each on_failure call saw."""

    def __init__(self, attempts: int, name: str, seen: list[History], **kwargs: Any) -> None:
        super().__init__(attempts, name, **kwargs)
        self.seen = seen

    def on_failure(self, history: History, *args: Any, **kwargs: Any) -> retry.Decision:
        self.seen.append(History(list(history), history.failure))
        return super().on_failure(history, *args, **kwargs)


def test_times_retries_a_failing_flow_until_it_succeeds(engine_kind: str, rec: Recorder) -> None:
    flaky = FailTimes("flaky", rec, times=2)
    flow = linear_flow.Flow("f", retry=retry.Times(3, "r")).add(Step("a", rec), flaky)
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert rec.executed() == ["a", "flaky", "a", "flaky", "a", "flaky"]
    assert rec.reverted() == ["flaky", "a", "flaky", "a"]
    assert engine.storage.get_flow_state() == states.SUCCESS
    assert engine.storage.get_atom_state("r") == states.SUCCESS


def test_times_gives_up_after_its_attempts_and_reverts_the_flow(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f", retry=retry.Times(3, "r")).add(Step("a", rec), Boom("b", rec))
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="b failed"):
        engine.run()
    assert rec.executed() == ["a", "b"] * 3
    assert rec.reverted() == ["b", "a"] * 3
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("r") == states.REVERTED


def test_times_provides_the_attempt_number_to_its_flow(engine_kind: str, rec: Recorder) -> None:
    flaky = FailTimes("flaky", rec, times=2, requires=["attempt"])
    flow = linear_flow.Flow("f", retry=retry.Times(5, "r", provides="attempt")).add(flaky)
    engines.run(flow, engine=engine_kind)
    assert [d["attempt"] for d in rec.details("execute", "flaky")] == [1, 2, 3]


def test_for_each_feeds_each_value_until_one_works(engine_kind: str, rec: Recorder) -> None:
    flaky = FailTimes("flaky", rec, times=2, requires=["value"])
    flow = linear_flow.Flow("f", retry=retry.ForEach(["x", "y", "z", "w"], "r", provides="value")).add(flaky)
    result = engines.run(flow, engine=engine_kind)
    assert [d["value"] for d in rec.details("execute", "flaky")] == ["x", "y", "z"]
    assert result["value"] == "z"


def test_for_each_reverts_when_every_value_failed(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("f", retry=retry.ForEach([1, 2], "r", provides="value")).add(
        Boom("b", rec, requires=["value"])
    )
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="b failed"):
        engine.run()
    assert [d["value"] for d in rec.details("execute", "b")] == [1, 2]
    assert engine.storage.get_flow_state() == states.REVERTED


def test_parameterized_for_each_takes_its_values_from_storage(engine_kind: str, rec: Recorder) -> None:
    flaky = FailTimes("flaky", rec, times=1, requires=["value"])
    flow = linear_flow.Flow("f", retry=retry.ParameterizedForEach("r", provides="value")).add(flaky)
    engines.run(flow, store={"values": [10, 20, 30]}, engine=engine_kind)
    assert [d["value"] for d in rec.details("execute", "flaky")] == [10, 20]


def test_parameterized_for_each_values_can_be_rebound(engine_kind: str, rec: Recorder) -> None:
    flaky = FailTimes("flaky", rec, times=1, requires=["value"])
    choices = retry.ParameterizedForEach("r", provides="value", rebind={"values": "choices"})
    engines.run(linear_flow.Flow("f", retry=choices).add(flaky), store={"choices": "ab"}, engine=engine_kind)
    assert [d["value"] for d in rec.details("execute", "flaky")] == ["a", "b"]


def test_retry_history_is_given_to_on_failure_with_each_attempts_failures(
    engine_kind: str, rec: Recorder
) -> None:
    seen: list[History] = []
    flaky = FailTimes("flaky", rec, times=2)
    engines.run(linear_flow.Flow("f", retry=Recording(5, "r", seen)).add(flaky), engine=engine_kind)
    assert [len(h) for h in seen] == [1, 2]
    last = seen[-1]
    assert list(last.provided_iter()) == [1, 2]
    failures = list(last.outcomes_iter())
    assert [name for name, _ in failures] == ["flaky", "flaky"]
    assert [f.exception_str for _, f in failures] == ["flaky failed (call 1)", "flaky failed (call 2)"]
    assert last.caused_by(ValueError)


def test_retry_history_is_in_storage_after_the_run(engine_kind: str, rec: Recorder) -> None:
    flaky = FailTimes("flaky", rec, times=1)
    engine = engines.load(linear_flow.Flow("f", retry=retry.Times(3, "r")).add(flaky), engine=engine_kind)
    engine.run()
    history = engine.storage.get_retry_history("r")
    assert len(history) == 2
    assert list(history.provided_iter()) == [1, 2]
    assert [name for name, _ in history.outcomes_iter(0)] == ["flaky"]
    assert list(history.outcomes_iter(1)) == []


def test_nested_retries_retry_the_inner_flow_first(engine_kind: str, rec: Recorder) -> None:
    # The inner flow gets 2 attempts per outer attempt; the task fails 3 times.
    inner = linear_flow.Flow("inner", retry=retry.Times(2, "r_inner")).add(
        Step("b", rec), FailTimes("c", rec, times=3)
    )
    flow = linear_flow.Flow("outer", retry=retry.Times(2, "r_outer")).add(Step("a", rec), inner)
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert rec.executed() == ["a", "b", "c", "b", "c", "a", "b", "c", "b", "c"]
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_nested_retries_exhausted_only_revert_the_inner_flow(engine_kind: str, rec: Recorder) -> None:
    # TaskFlow's rule: the inner REVERT asks the outer retry; once that one also says
    # REVERT, only the inner flow is reverted (the outer atoms keep their results).
    inner = linear_flow.Flow("inner", retry=retry.Times(2, "r_inner")).add(Boom("c", rec))
    flow = linear_flow.Flow("outer", retry=retry.Times(2, "r_outer")).add(Step("a", rec), inner)
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.executed() == ["a", "c", "c", "a", "c", "c"]
    assert rec.reverted() == ["c", "c", "a", "c", "c"]
    assert engine.storage.get_flow_state() == states.REVERTED
    assert engine.storage.get_atom_state("c") == states.REVERTED
    assert engine.storage.get_atom_state("r_inner") == states.REVERTED
    assert engine.storage.get_atom_state("a") == states.SUCCESS
    assert engine.storage.get_atom_state("r_outer") == states.SUCCESS


def test_nested_retries_exhausted_with_defer_reverts_revert_everything(
    engine_kind: str, rec: Recorder
) -> None:
    inner = linear_flow.Flow("inner", retry=retry.Times(2, "r_inner")).add(Boom("c", rec))
    flow = linear_flow.Flow("outer", retry=retry.Times(2, "r_outer")).add(Step("a", rec), inner)
    engine = engines.load(flow, engine=engine_kind, defer_reverts=True)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.executed() == ["a", "c", "c", "a", "c", "c"]
    assert engine.storage.get_flow_state() == states.REVERTED
    for name in ("a", "c", "r_inner", "r_outer"):
        assert engine.storage.get_atom_state(name) == states.REVERTED


def _subflow_reverting(rec: Recorder, retry_atom: retry.Retry) -> linear_flow.Flow:
    return linear_flow.Flow("outer").add(
        Step("a", rec),
        linear_flow.Flow("sub", retry=retry_atom).add(Step("b", rec), Boom("c", rec)),
        Step("d", rec),
    )


def test_revert_decision_only_reverts_the_retried_subflow(engine_kind: str, rec: Recorder) -> None:
    # TaskFlow's quirk, kept: with no enclosing retry and no defer_reverts, a REVERT
    # decision reverts its own flow, leaves earlier atoms alone and stops the run.
    engine = engines.load(_subflow_reverting(rec, retry.AlwaysRevert("r")), engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.reverted() == ["c", "b"]
    assert engine.storage.get_atom_state("a") == states.SUCCESS
    assert engine.storage.get_atom_state("r") == states.REVERTED
    assert engine.storage.get_atom_state("d") == states.PENDING
    assert engine.storage.get_flow_state() == states.REVERTED


def test_revert_decision_with_defer_reverts_reverts_everything(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(
        _subflow_reverting(rec, retry.AlwaysRevert("r")), engine=engine_kind, defer_reverts=True
    )
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.reverted() == ["c", "b", "a"]
    assert engine.storage.get_atom_state("a") == states.REVERTED
    assert engine.storage.get_atom_state("d") == states.PENDING
    assert engine.storage.get_flow_state() == states.REVERTED


def test_revert_all_decision_reverts_everything(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(_subflow_reverting(rec, retry.AlwaysRevertAll("r")), engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.reverted() == ["c", "b", "a"]
    assert engine.storage.get_atom_state("a") == states.REVERTED
    assert engine.storage.get_atom_state("r") == states.REVERTED


def test_revert_all_ignores_an_enclosing_retry(engine_kind: str, rec: Recorder) -> None:
    inner = linear_flow.Flow("inner", retry=retry.AlwaysRevertAll("r_inner")).add(
        FailTimes("c", rec, times=1)
    )
    flow = linear_flow.Flow("outer", retry=retry.Times(5, "r_outer")).add(Step("a", rec), inner)
    engine = engines.load(flow, engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.executed() == ["a", "c"]
    assert engine.storage.get_flow_state() == states.REVERTED


def test_revert_all_overrides_a_sibling_retry_already_deciding_to_retry(rec: Recorder) -> None:
    # The serial engine runs both failing atoms in one step and resolves them in
    # flow order: "retried" decides RETRY first, then "doomed" decides REVERT_ALL.
    # Everything must be reverted, the first retry included, not retried again.
    retried = linear_flow.Flow("retried", retry=retry.Times(3, "r_retried")).add(
        Step("b", rec), FailTimes("b_bad", rec, times=1)
    )
    doomed = linear_flow.Flow("doomed", retry=retry.AlwaysRevertAll("r_doomed")).add(
        Step("a", rec), Boom("a_bad", rec)
    )
    flow = linear_flow.Flow("outer").add(
        Step("pre", rec), unordered_flow.Flow("both").add(retried, doomed), Step("post", rec)
    )
    engine = engines.load(flow, engine="serial")
    with pytest.raises(Exception, match="a_bad failed"):
        engine.run()
    assert rec.executed().count("b_bad") == 1
    assert "pre" in rec.reverted()
    for name in ("pre", "b", "b_bad", "r_retried", "a", "a_bad", "r_doomed"):
        assert engine.storage.get_atom_state(name) == states.REVERTED, name
    assert engine.storage.get_atom_state("post") == states.PENDING
    assert engine.storage.get_flow_state() == states.REVERTED


def test_revert_decision_defers_to_an_enclosing_retry(engine_kind: str, rec: Recorder) -> None:
    inner = linear_flow.Flow("inner", retry=retry.AlwaysRevert("r_inner")).add(FailTimes("c", rec, times=1))
    flow = linear_flow.Flow("outer", retry=retry.Times(3, "r_outer")).add(Step("a", rec), inner)
    engine = engines.load(flow, engine=engine_kind)
    engine.run()
    assert rec.executed() == ["a", "c", "a", "c"]
    assert engine.storage.get_flow_state() == states.SUCCESS


def test_times_with_revert_all_reverts_everything_once_exhausted(engine_kind: str, rec: Recorder) -> None:
    engine = engines.load(_subflow_reverting(rec, retry.Times(2, "r", revert_all=True)), engine=engine_kind)
    with pytest.raises(ValueError, match="c failed"):
        engine.run()
    assert rec.executed() == ["a", "b", "c", "b", "c"]
    assert engine.storage.get_atom_state("a") == states.REVERTED


def test_a_retry_only_retries_its_own_flow(engine_kind: str, rec: Recorder) -> None:
    flow = linear_flow.Flow("outer").add(
        Step("before", rec),
        linear_flow.Flow("sub", retry=retry.Times(3, "r")).add(FailTimes("flaky", rec, times=1)),
        Step("after", rec),
    )
    engines.run(flow, engine=engine_kind)
    assert rec.executed() == ["before", "flaky", "flaky", "after"]
    assert rec.reverted() == ["flaky"]


def test_a_retry_in_an_unordered_flow_leaves_its_siblings_alone(engine_kind: str, rec: Recorder) -> None:
    flow = unordered_flow.Flow("u").add(
        Step("side", rec),
        linear_flow.Flow("sub", retry=retry.Times(3, "r")).add(FailTimes("flaky", rec, times=2)),
    )
    engines.run(flow, engine=engine_kind)
    assert rec.executed().count("side") == 1
    assert rec.executed().count("flaky") == 3
    assert "side" not in rec.reverted()


def test_a_retrys_value_is_visible_to_nested_flows(engine_kind: str, rec: Recorder) -> None:
    inner = linear_flow.Flow("inner").add(Step("deep", rec, requires=["n"]))
    flow = linear_flow.Flow("f", retry=retry.Times(2, "r", provides="n")).add(inner)
    engines.run(flow, engine=engine_kind)
    assert rec.details("execute", "deep") == [{"n": 1}]


def test_a_retry_can_require_values_from_before_its_flow(engine_kind: str) -> None:
    seen: list[Any] = []

    class Needs(retry.Times):
        def execute(self, history: History, limit: int) -> int:  # type: ignore[override]
            seen.append(limit)
            return len(history) + 1

        def on_failure(self, history: History, limit: int) -> retry.Decision:  # type: ignore[override]
            return retry.RETRY if len(history) < limit else retry.REVERT

    flow = linear_flow.Flow("outer").add(
        task.FunctorTask(lambda: 2, name="limit", provides="limit"),
        linear_flow.Flow("sub", retry=Needs(name="r")).add(FailTimes("flaky", Recorder(), times=1)),
    )
    engines.run(flow, engine=engine_kind)
    assert seen == [2, 2]


@pytest.mark.parametrize(
    "make",
    [
        lambda: retry.ForEach(5, name="regions", provides="v"),
        lambda: retry.ParameterizedForEach(name="regions", provides="v"),
    ],
)
def test_for_each_values_that_are_no_collection_fail_naming_the_retry_and_the_value(make: Any) -> None:
    # It failed with a bare "'int' object is not iterable": no retry, no value named.
    # TaskFlow's sentence still comes first (OpenStack code matches on it).
    class Use(task.Task):
        def execute(self, v: Any) -> Any:
            return v

    flow = linear_flow.Flow("f", retry=make()).add(Use("use"))
    with pytest.raises(TypeError) as caught:
        engines.run(flow, store={"values": 5})
    assert str(caught.value).startswith("'int' object is not iterable (retry 'regions' (")
    assert str(caught.value).endswith("tries its values one by one, but 5 is not a collection of values)")
