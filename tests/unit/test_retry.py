"""Retries: decisions, history queries, and the built-in strategies."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import retry
from flowkit.patterns import linear_flow, unordered_flow
from flowkit.types.failure import Failure


def failure_of(error: BaseException) -> Failure:
    return Failure.from_exception(error)


def history(*attempts: tuple[Any, dict[str, Failure]], failure: Failure | None = None) -> retry.History:
    return retry.History(list(attempts), failure=failure)


# -- decisions and constants -----------------------------------------------------


def test_decision_is_a_str_enum_with_taskflow_values() -> None:
    assert issubclass(retry.Decision, enum.StrEnum)
    assert {d.name: d.value for d in retry.Decision} == {
        "REVERT": "REVERT",
        "REVERT_ALL": "REVERT_ALL",
        "RETRY": "RETRY",
    }
    assert retry.Decision.RETRY == "RETRY"


def test_module_aliases_are_the_decisions() -> None:
    assert retry.RETRY is retry.Decision.RETRY
    assert retry.REVERT is retry.Decision.REVERT
    assert retry.REVERT_ALL is retry.Decision.REVERT_ALL


def test_keyword_constants_have_taskflow_values() -> None:
    assert retry.EXECUTE_REVERT_HISTORY == "history"
    assert retry.REVERT_FLOW_FAILURES == "flow_failures"


# -- History ---------------------------------------------------------------------


def test_empty_history_has_no_attempts() -> None:
    h = history()
    assert len(h) == 0
    assert list(h) == []
    assert list(h.provided_iter()) == []
    assert list(h.outcomes_iter()) == []
    assert h.failure is None
    assert not h.caused_by(ValueError)


def test_history_gives_attempts_by_index_and_in_order() -> None:
    boom = failure_of(ValueError("boom"))
    h = history((1, {"t1": boom}), (2, {}))
    assert len(h) == 2
    assert h[0] == (1, {"t1": boom})
    assert h[-1] == (2, {})
    assert list(h) == [(1, {"t1": boom}), (2, {})]


def test_history_provided_iter_yields_what_each_attempt_provided() -> None:
    h = history(("a", {}), ("b", {}), ("c", {}))
    assert list(h.provided_iter()) == ["a", "b", "c"]


def test_history_outcomes_iter_yields_atom_failures_of_all_or_one_attempt() -> None:
    first, second, third = (failure_of(ValueError(str(n))) for n in range(3))
    h = history((1, {"t1": first, "t2": second}), (2, {"t1": third}))
    assert list(h.outcomes_iter()) == [("t1", first), ("t2", second), ("t1", third)]
    assert list(h.outcomes_iter(index=1)) == [("t1", third)]
    assert list(h.outcomes_iter(index=-2)) == [("t1", first), ("t2", second)]


def test_history_caused_by_looks_at_atom_failures() -> None:
    h = history((1, {"t1": failure_of(KeyError("k"))}), (2, {"t2": failure_of(ValueError("v"))}))
    assert h.caused_by(KeyError)
    assert h.caused_by(ValueError)
    assert h.caused_by(LookupError)
    assert h.caused_by("KeyError")
    assert not h.caused_by(TypeError)


def test_history_caused_by_may_look_at_one_attempt() -> None:
    h = history((1, {"t1": failure_of(KeyError("k"))}), (2, {"t2": failure_of(ValueError("v"))}))
    assert h.caused_by(KeyError, index=0)
    assert not h.caused_by(KeyError, index=1)


def test_history_caused_by_includes_the_retry_failure_only_when_asked() -> None:
    own = failure_of(RuntimeError("retry broke"))
    h = history((1, {}), failure=own)
    assert h.failure is own
    assert not h.caused_by(RuntimeError)
    assert h.caused_by(RuntimeError, include_retry=True)
    assert list(h.outcomes_iter()) == []


# -- the Retry base --------------------------------------------------------------


class Custom(retry.Retry):
    def execute(self, history, needed, maybe=1):
        return needed

    def revert(self, history, needed, **kwargs):
        return None

    def on_failure(self, history, needed, maybe=1):
        return retry.RETRY


def test_history_is_never_a_requirement() -> None:
    r = Custom()
    assert r.requires == frozenset({"needed"})
    assert "history" not in r.rebind
    assert "history" not in r.revert_rebind
    assert r.optional == frozenset({"maybe"})


def test_retry_is_abstract_without_execute_and_on_failure() -> None:
    class Incomplete(retry.Retry):
        def execute(self, history):
            return None

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]


def test_retry_accepts_provides_requires_and_rebind() -> None:
    r = Custom(name="r", provides="x", requires=["needed"], rebind={"needed": "other"})
    assert r.name == "r"
    assert r.provides == frozenset({"x"})
    assert r.requires == frozenset({"other"})


def test_retry_name_defaults_like_a_task() -> None:
    assert retry.Times().name == "flowkit.retry.Times"


def test_unnamed_retry_is_renamed_after_its_flow() -> None:
    r = retry.Times(3)
    linear_flow.Flow("outer", retry=r)
    assert r.name == "outer_retry"
    # Once named, a second flow does not rename it again.
    unordered_flow.Flow("other", retry=r)
    assert r.name == "outer_retry"


def test_named_retry_keeps_its_name_in_a_flow() -> None:
    r = retry.Times(3, name="mine")
    linear_flow.Flow("outer", retry=r)
    assert r.name == "mine"


def test_retry_renamed_by_hand_keeps_that_name_in_a_flow() -> None:
    r = retry.Times(3)
    r.name = "by-hand"
    linear_flow.Flow("outer", retry=r)
    assert r.name == "by-hand"


# -- built-in strategies ---------------------------------------------------------


def test_always_revert_reverts_and_provides_nothing() -> None:
    r = retry.AlwaysRevert()
    assert r.on_failure(history=history()) is retry.REVERT
    assert r.execute(history=history()) is None
    assert r.requires == frozenset()


def test_always_revert_all_reverts_everything() -> None:
    r = retry.AlwaysRevertAll()
    assert r.on_failure(history=history()) is retry.REVERT_ALL
    assert r.execute(history=history()) is None


def test_times_provides_the_attempt_number() -> None:
    r = retry.Times(3, provides="attempt")
    assert r.execute(history=history()) == 1
    assert r.execute(history=history((1, {}), (2, {}))) == 3


def test_times_retries_until_attempts_are_used_up_then_reverts() -> None:
    r = retry.Times(attempts=3)
    assert r.attempts == 3
    assert r.on_failure(history=history((1, {}))) is retry.RETRY
    assert r.on_failure(history=history((1, {}), (2, {}))) is retry.RETRY
    assert r.on_failure(history=history((1, {}), (2, {}), (3, {}))) is retry.REVERT


def test_times_with_revert_all_reverts_everything_when_out_of_attempts() -> None:
    r = retry.Times(attempts=1, revert_all=True)
    assert r.on_failure(history=history((1, {}))) is retry.REVERT_ALL


def test_times_defaults_to_a_single_attempt() -> None:
    assert retry.Times().on_failure(history=history((1, {}))) is retry.REVERT


def test_times_accepts_taskflow_positional_arguments() -> None:
    r = retry.Times(2, "r1", "x")
    assert (r.name, r.provides) == ("r1", frozenset({"x"}))


def test_for_each_provides_the_next_untried_value() -> None:
    r = retry.ForEach(["a", "b", "c"], provides="value")
    assert r.execute(history=history()) == "a"
    assert r.execute(history=history(("a", {}))) == "b"
    assert r.execute(history=history(("a", {}), ("b", {}))) == "c"


def test_for_each_tries_a_value_listed_twice_twice() -> None:
    r = retry.ForEach([1, 1, 2])
    assert r.execute(history=history((1, {}))) == 1
    assert r.execute(history=history((1, {}), (1, {}))) == 2


def test_for_each_works_with_unhashable_values() -> None:
    r = retry.ForEach([{"size": 1}, {"size": 2}])
    assert r.execute(history=history(({"size": 1}, {}))) == {"size": 2}


def test_for_each_retries_while_values_remain_then_reverts() -> None:
    r = retry.ForEach([1, 2])
    assert r.on_failure(history=history((1, {}))) is retry.RETRY
    assert r.on_failure(history=history((1, {}), (2, {}))) is retry.REVERT
    everything = retry.ForEach([1], revert_all=True)
    assert everything.on_failure(history=history((1, {}))) is retry.REVERT_ALL


def test_for_each_execute_fails_when_every_value_was_tried() -> None:
    r = retry.ForEach([1], name="each")
    with pytest.raises(exc.NotFound, match="each"):
        r.execute(history=history((1, {})))


def test_parameterized_for_each_requires_values() -> None:
    r = retry.ParameterizedForEach(provides="value")
    assert r.requires == frozenset({"values"})
    assert r.rebind == {"values": "values"}
    rebound = retry.ParameterizedForEach(rebind={"values": "choices"})
    assert rebound.requires == frozenset({"choices"})


def test_parameterized_for_each_walks_the_given_values() -> None:
    r = retry.ParameterizedForEach()
    assert r.execute(values=[5, 6], history=history()) == 5
    assert r.execute(values=[5, 6], history=history((5, {}))) == 6
    assert r.on_failure(values=[5, 6], history=history((5, {}))) is retry.RETRY
    assert r.on_failure(values=[5, 6], history=history((5, {}), (6, {}))) is retry.REVERT
    with pytest.raises(exc.NotFound):
        r.execute(values=[5], history=history((5, {})))


def test_parameterized_for_each_may_revert_everything() -> None:
    r = retry.ParameterizedForEach(revert_all=True)
    assert r.on_failure(values=[], history=history()) is retry.REVERT_ALL
