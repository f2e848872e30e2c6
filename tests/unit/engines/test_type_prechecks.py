"""The engine's pre-checks for type checks and guards never skip work ``typed`` or the guards would do.

A flow in which no annotated argument is fed by another atom, or whose
annotations all name one plain class, skips importing :mod:`flowkit.typed` for
the compile-time check, and a flow with no atom whose result may be validated
skips :mod:`flowkit._guards` (start-up time); that is only right when
:func:`flowkit.typed.check_compilation` could find no mismatch and
:func:`flowkit._guards.build` no atom to guard.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

import pytest

from flowkit import _guards, engines, exceptions, retry, task, typed
from flowkit.engines._compiler import Compilation, compile_flow
from flowkit.engines._engine import may_check_types, may_guard
from flowkit.patterns import linear_flow


class Plain(task.Task):
    def execute(self):  # type: ignore[no-untyped-def]  # the point: no annotation at all
        return 1


class ReturnsInt(task.Task):
    def execute(self) -> int:
        return 1


class ReturnsStr(task.Task):
    def execute(self) -> str:
        return "s"


class TakesInt(task.Task):
    def execute(self, x: int):  # type: ignore[no-untyped-def]  # an input annotation only
        return x


class TakesAny(task.Task):
    def execute(self, **values: int) -> int:
        return sum(values.values())


class TakesAnything(task.Task):
    """How tasks written for ``mypy --strict`` often spell "any arguments"."""

    def execute(self, **values: Any) -> int:
        return len(values)


class TakesAnyObject(task.Task):
    def execute(self, **values: object) -> int:
        return len(values)


class TakesStarred(task.Task):
    def execute(self, *values: int, **rest):  # type: ignore[no-untyped-def]  # ``*values`` takes nothing
        return rest


class Point(TypedDict):
    x: str


class ReturnsPoint(task.Task):
    def execute(self) -> Point:
        return {"x": "east"}


class TakesPoint(task.Task):
    def execute(self, x: Point):  # type: ignore[no-untyped-def]  # fed the result's "x" item, a str
        return x


class ReturnsBool(task.Task):
    def execute(self) -> bool:
        return True


class TakesOptional(task.Task):
    def execute(self, x: int | None):  # type: ignore[no-untyped-def]  # not a plain class
        return x


class Validated(task.Task):
    validate_types = True

    def execute(self) -> int:
        return 1


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


def _validated_instance() -> task.Task:
    atom = ReturnsInt("v")
    atom.validate_types = True  # type: ignore[attr-defined]  # set on this atom only
    return atom


FLOWS: dict[str, Callable[[], Any]] = {
    "plain": lambda: linear_flow.Flow("f").add(Plain("a"), Plain("b")),
    "return annotation": lambda: linear_flow.Flow("f").add(Plain("a"), ReturnsInt("b")),
    "input annotation fed by the store": lambda: linear_flow.Flow("f").add(TakesInt("b", inject={"x": 1})),
    "input annotation fed by an atom": lambda: linear_flow.Flow("f").add(
        ReturnsInt("a", provides="x"), TakesInt("b")
    ),
    "mismatch": lambda: linear_flow.Flow("f").add(ReturnsStr("a", provides="x"), TakesInt("b")),
    "kwargs annotation": lambda: linear_flow.Flow("f").add(
        ReturnsInt("a", provides="y"), TakesAny("b", requires=["y"])
    ),
    "kwargs mismatch": lambda: linear_flow.Flow("f").add(
        ReturnsStr("a", provides="y"), TakesAny("b", rebind={"n": "y"})
    ),
    "kwargs annotation fed by the store": lambda: linear_flow.Flow("f").add(
        TakesAny("b", requires=["y"], inject={"y": 1})
    ),
    "kwargs: Any": lambda: linear_flow.Flow("f").add(
        ReturnsStr("a", provides="y"), TakesAnything("b", requires=["y"])
    ),
    "kwargs: object": lambda: linear_flow.Flow("f").add(
        ReturnsStr("a", provides="y"), TakesAnyObject("b", requires=["y"])
    ),
    "star args annotation": lambda: linear_flow.Flow("f").add(
        ReturnsStr("a", provides="values"), TakesStarred("b", requires=["values"])
    ),
    "one type throughout, by index": lambda: linear_flow.Flow("f").add(
        ReturnsInt("a", provides=["x"]), TakesInt("b")
    ),
    "a TypedDict item read as the TypedDict": lambda: linear_flow.Flow("f").add(
        ReturnsPoint("a", provides={"x"}), TakesPoint("b")
    ),
    "bool into int": lambda: linear_flow.Flow("f").add(ReturnsBool("a", provides="x"), TakesInt("b")),
    "str into int or None": lambda: linear_flow.Flow("f").add(
        ReturnsStr("a", provides="x"), TakesOptional("b")
    ),
    "validated class": lambda: linear_flow.Flow("f").add(Validated("a")),
    "validated atom": lambda: linear_flow.Flow("f").add(_validated_instance()),
    "own contract": lambda: linear_flow.Flow("f").add(OwnContract("a")),
    "callable execute": lambda: linear_flow.Flow("f").add(CallableExecute("a")),
    "function task": lambda: linear_flow.Flow("f").add(task.FunctorTask(lambda: 1, name="fn")),
    "with a retry": lambda: linear_flow.Flow("f", retry=retry.Times(2)).add(Plain("a")),
}

OPTIONS: dict[str, Mapping[str, Any]] = {
    "none": {},
    "validate": {"validate_types": True},
    "no validation": {"validate_types": False},
}


def _refuses(compilation: Compilation) -> bool:
    try:
        typed.check_compilation(compilation)
    except exceptions.TypeMismatch:
        return True
    return False


@pytest.mark.parametrize("shape", sorted(FLOWS))
def test_the_type_check_is_skipped_only_when_it_cannot_refuse(shape: str) -> None:
    compilation = compile_flow(FLOWS[shape]())
    atoms = compilation.atoms
    if _refuses(compilation):
        assert may_check_types(atoms, {type(node.atom) for node in atoms})


@pytest.mark.parametrize("options", sorted(OPTIONS))
@pytest.mark.parametrize("shape", sorted(FLOWS))
def test_guards_are_skipped_only_when_none_would_be_built(shape: str, options: str) -> None:
    compilation = compile_flow(FLOWS[shape]())
    atoms = compilation.atoms
    if _guards.build(compilation, OPTIONS[options]):
        assert may_guard(atoms, {type(node.atom) for node in atoms}, OPTIONS[options])


def test_plain_tasks_unfed_annotations_and_one_type_throughout_need_neither() -> None:
    for shape in (
        "plain",
        "return annotation",
        "input annotation fed by the store",
        "kwargs annotation fed by the store",
        "kwargs: Any",
        "kwargs: object",
        "input annotation fed by an atom",
        "kwargs annotation",
        "one type throughout, by index",
    ):
        atoms = compile_flow(FLOWS[shape]()).atoms
        classes = {type(node.atom) for node in atoms}
        assert not may_check_types(atoms, classes), shape
        # Once pydantic is imported (by another test), guards may turn arguments into models.
        assert not may_guard(atoms, classes, {}) or "pydantic" in sys.modules, shape


def test_the_pre_checks_say_yes_where_there_is_work() -> None:
    for shape in (
        "mismatch",
        "kwargs mismatch",
        "bool into int",
        "str into int or None",
        # One class throughout, but an item of a TypedDict result has a type of its own.
        "a TypedDict item read as the TypedDict",
    ):
        # An annotated ``**values`` types every value fed to it by ``requires`` or ``rebind``;
        # an annotation typed reads other than plainly, or two classes, may not match.
        atoms = compile_flow(FLOWS[shape]()).atoms
        assert may_check_types(atoms, {type(node.atom) for node in atoms}), shape
    for shape in ("validated class", "validated atom"):
        atoms = compile_flow(FLOWS[shape]()).atoms
        assert may_guard(atoms, {type(node.atom) for node in atoms}, {}), shape
    atoms = compile_flow(FLOWS["return annotation"]()).atoms
    classes = {type(node.atom) for node in atoms}
    assert may_guard(atoms, classes, {"validate_types": True})
    assert may_guard(atoms, classes, {"cache": "memory://"})


def test_a_type_mismatch_is_still_found_next_to_plain_tasks() -> None:
    flow = linear_flow.Flow("f").add(Plain("p"), ReturnsStr("g", provides="x"), TakesInt("t"))
    with pytest.raises(exceptions.TypeMismatch, match="atom 't' requires 'x'"):
        engines.load(flow, check_types=True).compile()


def test_a_result_is_still_validated_when_an_atom_asks() -> None:
    class Lies(task.Task):
        def execute(self) -> int:
            return "not an int"  # type: ignore[return-value]

    liar = Lies("liar")
    liar.validate_types = True  # type: ignore[attr-defined]
    with pytest.raises(exceptions.InvalidResult, match="liar"):
        engines.run(linear_flow.Flow("f").add(Plain("p"), liar))
    with pytest.raises(exceptions.InvalidResult, match="liar"):
        engines.run(linear_flow.Flow("f").add(Lies("liar")), validate_types=True)
