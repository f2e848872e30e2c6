"""The engine's pre-check for type checks and guards never hides a class ``typed`` would look at.

A flow whose atoms declare nothing skips importing :mod:`flowkit.typed` and
:mod:`flowkit._guards` (start-up time); that is only right when
:func:`flowkit.typed.classes_declaring` would find no class either.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import engines, exceptions, retry, task, typed
from flowkit.engines._compiler import compile_flow
from flowkit.engines._engine import may_declare_types
from flowkit.patterns import linear_flow


class Plain(task.Task):
    def execute(self):  # type: ignore[no-untyped-def]  # the point: no annotation at all
        return 1


class ReturnsInt(task.Task):
    def execute(self) -> int:
        return 1


class TakesInt(task.Task):
    def execute(self, x: int):  # type: ignore[no-untyped-def]  # an input annotation only
        return x


class OwnContract(task.Task):
    def execute(self):  # type: ignore[no-untyped-def]
        return 1

    def __flowkit_contract__(self) -> typed.Contract:
        return typed.Contract({}, int)


class CallableExecute(task.Task):
    class _Call:
        def __call__(self, _task: Any) -> int:
            return 1

    execute = _Call()  # type: ignore[assignment]


FLOWS = {
    "plain": lambda: linear_flow.Flow("f").add(Plain("a"), Plain("b")),
    "return annotation": lambda: linear_flow.Flow("f").add(Plain("a"), ReturnsInt("b")),
    "input annotation": lambda: linear_flow.Flow("f").add(TakesInt("b", inject={"x": 1})),
    "own contract": lambda: linear_flow.Flow("f").add(OwnContract("a")),
    "callable execute": lambda: linear_flow.Flow("f").add(CallableExecute("a")),
    "function task": lambda: linear_flow.Flow("f").add(task.FunctorTask(lambda: 1, name="fn")),
    "with a retry": lambda: linear_flow.Flow("f", retry=retry.Times(2)).add(Plain("a")),
}


@pytest.mark.parametrize("shape", sorted(FLOWS))
def test_the_pre_check_is_true_wherever_typed_finds_a_declaring_class(shape: str) -> None:
    atoms = compile_flow(FLOWS[shape]()).atoms
    declaring = typed.classes_declaring(atoms, inputs=True) | typed.classes_declaring(atoms, inputs=False)
    if declaring:
        assert may_declare_types(atoms), sorted(cls.__name__ for cls in declaring)


def test_plain_tasks_declare_nothing_and_annotated_ones_may() -> None:
    assert not may_declare_types(compile_flow(FLOWS["plain"]()).atoms)
    assert may_declare_types(compile_flow(FLOWS["return annotation"]()).atoms)


def test_a_type_mismatch_is_still_found_next_to_plain_tasks() -> None:
    class GivesStr(task.Task):
        def execute(self) -> str:
            return "s"

    flow = linear_flow.Flow("f").add(Plain("p"), GivesStr("g", provides="x"), TakesInt("t"))
    with pytest.raises(exceptions.TypeMismatch, match="atom 't' requires 'x'"):
        engines.load(flow).compile()
