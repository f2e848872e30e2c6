"""Errors start with TaskFlow's words (callers match them), then say what flowkit knows."""

from __future__ import annotations

import pytest

from flowkit import exceptions as exc
from flowkit import retry, states, task
from flowkit.patterns import graph_flow


class Noop(task.Task):
    def execute(self) -> None:
        pass


class Uses(task.Task):
    def execute(self, x: int) -> int:
        return x


def test_graph_flow_link_and_target_errors() -> None:
    a, b = Noop("a"), Noop("b")
    flow = graph_flow.Flow("g").add(a)
    with pytest.raises(ValueError, match=r"^Node '\"b==1.0\"' not found to link to: it is not in flow 'g'"):
        flow.link(a, b)
    with pytest.raises(ValueError, match=r"^Node '\"b==1.0\"' not found to link from"):
        flow.link(b, a)
    targeted = graph_flow.TargetedFlow("t").add(a)
    with pytest.raises(ValueError, match=r"^Node '\"b==1.0\"' not found"):
        targeted.set_target(b)


def test_a_cycle_is_refused_with_taskflows_words_and_the_cycle() -> None:
    first, second = (
        Uses("first", provides="y", rebind={"x": "z"}),
        Uses("second", provides="z", rebind={"x": "y"}),
    )
    with pytest.raises(exc.DependencyFailure, match=r"^No path through the node\(s\) in the graph .* cycle"):
        graph_flow.Flow("g").add(first, second)


def test_atom_argument_errors() -> None:
    with pytest.raises(TypeError, match=r"^Atom provides parameter can be only"):
        Noop("a", provides=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Invalid rebind value"):
        Noop("a", rebind=object())  # type: ignore[arg-type]


def test_state_transition_errors() -> None:
    with pytest.raises(
        exc.InvalidState, match=r"^Flow transition from 'FAILURE' to 'SUCCESS' is not allowed"
    ):
        states.check_flow_transition(states.FAILURE, states.SUCCESS)
    with pytest.raises(exc.InvalidState, match=r"^Job transition from"):
        states.check_job_transition(states.COMPLETE, states.CLAIMED)


def test_for_each_out_of_values() -> None:
    r = retry.ForEach([], name="r1")
    with pytest.raises(
        exc.NotFound, match=r"^No elements left in collection of iterable retry controller r1"
    ):
        r.execute(history=retry.History([]))


def test_an_error_prints_its_chain_of_causes_like_taskflow() -> None:
    try:
        try:
            try:
                raise OSError("Didn't work")
            except OSError:
                exc.raise_with_cause(exc.TaskFlowException, "It didn't go so well")
        except exc.TaskFlowException:
            exc.raise_with_cause(exc.TaskFlowException, "I Failed")
    except exc.TaskFlowException as err:
        text = str(err)
    assert text.splitlines() == [
        "I Failed",
        "  TaskFlowException: It didn't go so well",
        "    OSError: Didn't work",
    ]


def test_wrapped_failure_lists_its_failures_plainly() -> None:
    from flowkit.types.failure import Failure

    wrapped = exc.WrappedFailure([Failure.from_exception(ValueError("嗨"))])
    assert str(wrapped) == "WrappedFailure: [Failure: ValueError: 嗨]"
