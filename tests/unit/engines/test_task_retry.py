"""A task's own ``retry=``: the same as the task alone in a linear flow with that retry."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, states, task
from flowkit import exceptions as exc
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit.retry import AlwaysRevert, Times


class Flaky(task.Task):
    """Fails its first ``failures`` calls, then returns how many calls it took."""

    def __init__(self, name: str, failures: int, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.failures = failures
        self.calls = 0
        self.reverts = 0

    def execute(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"{self.name} call {self.calls} fails")
        return self.calls

    def revert(self, **kwargs: Any) -> None:
        self.reverts += 1


class Use(task.Task):
    def execute(self, value: int) -> int:
        return value * 10


@pytest.mark.parametrize("kind", ["serial", "parallel", "asyncio"])
@pytest.mark.parametrize("retry", [3, Times(3)], ids=["int", "Times"])
def test_retry_runs_the_task_again(kind: str, retry: Any) -> None:
    flaky = Flaky("flaky", 2, provides="value", retry=retry)
    flow = linear_flow.Flow("f").add(flaky, Use("use", provides="out"))
    engine = engines.load(flow, engine=kind)
    engine.run()
    assert engine.storage.fetch("value") == 3
    assert engine.storage.fetch("out") == 30
    assert flaky.reverts == 2  # each failed attempt reverted before the next
    history = engine.storage.get_retry_history("flaky-retry")
    assert len(history) == 3


def test_same_as_wrapping_by_hand() -> None:
    by_hand = Flaky("flaky", 5, provides="value")
    hand_flow = linear_flow.Flow("f").add(
        linear_flow.Flow("flaky-retry", retry=Times(2, name="flaky-retry")).add(by_hand)
    )
    own = Flaky("flaky", 5, provides="value", retry=2)
    own_flow = linear_flow.Flow("f").add(own)
    outcomes = []
    for flow in (hand_flow, own_flow):
        engine = engines.load(flow)
        with pytest.raises(RuntimeError, match="call 2 fails"):
            engine.run()
        storage = engine.storage
        outcomes.append(
            (
                storage.get_flow_state(),
                storage.get_atom_state("flaky"),
                storage.get_atom_state("flaky-retry"),
                len(storage.get_retry_history("flaky-retry")),
            )
        )
    # (A reverted retry's history is cleared, as in TaskFlow.)
    assert outcomes[0] == outcomes[1] == (states.REVERTED, states.REVERTED, states.REVERTED, 0)
    assert by_hand.calls == own.calls == 2


def test_one_retry_object_serves_several_tasks() -> None:
    shared = Times(2)
    a, b = Flaky("a", 1, retry=shared), Flaky("b", 1, retry=shared)
    engine = engines.load(unordered_flow.Flow("u").add(a, b), engine="parallel")
    engine.run()
    assert (a.calls, b.calls) == (2, 2)
    assert shared.name != "a-retry"  # the given object is left as it was
    assert engine.storage.get_atom_state("a-retry") == states.SUCCESS
    assert engine.storage.get_atom_state("b-retry") == states.SUCCESS


def test_named_retry_keeps_its_name() -> None:
    flaky = Flaky("flaky", 1, retry=AlwaysRevert("mine"))
    engine = engines.load(flaky)
    with pytest.raises(RuntimeError):
        engine.run()
    assert engine.storage.get_atom_state("mine") == states.REVERTED


def test_on_a_task_linked_in_a_graph_flow() -> None:
    first = Flaky("first", 1, provides="value", retry=2)
    use = Use("use", provides="out")
    flow = graph_flow.Flow("g").add(first, use)
    engine = engines.load(flow, engine="parallel")
    engine.run()
    assert engine.storage.fetch("out") == 20
    # The user's flow still holds the task itself.
    assert [item for item, _ in flow.iter_nodes()] == [first, use]


@pytest.mark.parametrize(("revert_all", "before_state"), [(False, states.SUCCESS), (True, states.REVERTED)])
def test_out_of_attempts_reverts_as_the_retry_decides(revert_all: bool, before_state: str) -> None:
    before = Flaky("before", 0)
    flaky = Flaky("flaky", 10, retry=Times(3, revert_all=revert_all))
    engine = engines.load(linear_flow.Flow("f").add(before, flaky))
    with pytest.raises(RuntimeError, match="call 3 fails"):
        engine.run()
    assert flaky.calls == 3
    # REVERT undoes the retry's own scope (the task) only; REVERT_ALL everything.
    assert engine.storage.get_atom_state("before") == before_state
    assert engine.storage.get_atom_state("flaky") == states.REVERTED
    assert engine.storage.get_flow_state() == states.REVERTED


@pytest.mark.parametrize("bad", [0, -1, True, "3", 2.5, object()])
def test_bad_retry_is_refused_naming_the_task(bad: Any) -> None:
    with pytest.raises(exc.InvalidAtomOption) as caught:
        Flaky("named", 0, retry=bad)
    assert caught.value.atom == "named"
    assert caught.value.option == "retry"
    assert "'named'" in str(caught.value)
