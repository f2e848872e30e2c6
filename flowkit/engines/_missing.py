"""The error for atoms whose required arguments nothing provides, in TaskFlow's words.

A flow loaded up front (:meth:`flowkit.engines._engine.ActionEngine.validate`)
and a sub-flow spawned at run time (:mod:`flowkit.engines._splice`) find their
gaps differently (the store and ``inject``; for a spawn, also what its spawner
sees), but say them with this one helper, so a spawned flow's missing symbol is
reported exactly as the same flow loaded reports it: the flow's error listing
every missing argument and, after TaskFlow's sentence, the atoms at fault;
caused by one error per atom, naming the atom as TaskFlow does
(``'"pay==1.0"'``) and the method when the gap is in one alone.

Only a failure imports this module: a flow whose arguments are all provided
never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Any, NamedTuple

from flowkit import _steering
from flowkit import exceptions as exc
from flowkit.atom import Atom
from flowkit.engines._compiler import Node

__all__ = ["Gap", "missing_error"]


class Gap(NamedTuple):
    """The required symbols of one atom that nothing provides, by method.

    Attributes:
        node: the atom's node.
        execute: what its ``execute`` needs and nothing provides.
        revert: what its ``revert`` needs and nothing provides.
    """

    node: Node
    execute: Set[str]
    revert: Set[str]


def missing_error(flow: Any, gaps: Sequence[Gap]) -> exc.MissingDependencies:
    """The error for ``flow`` (a flow, or an atom loaded on its own) whose atoms have ``gaps``.

    As in TaskFlow: raised for the flow, naming every missing argument, caused by
    the chain of per-atom errors (each caused by the one before); flowkit's
    attributes name the first atom at fault and every missing symbol
    (``missing_requirements`` keeps TaskFlow's list, the atoms' argument names).
    An atom loaded on its own gets its own error, not one wrapped for a flow.

    Args:
        flow: what was loaded or spawned.
        gaps: one per atom with a gap, in the flow's order (not empty).
    """
    problems: list[exc.MissingDependencies] = []
    everything: set[str] = set()
    for gap in gaps:
        missing = set(gap.execute) | set(gap.revert)
        # Name the method only when the gap is in one of them alone.
        method = None if gap.execute and gap.revert else ("execute" if gap.execute else "revert")
        problems.append(_atom_error(gap.node, missing, problems[-1] if problems else None, method))
        # TaskFlow's flow-level list names the atoms' arguments, not the symbols.
        node = gap.node
        everything.update(
            p.arg for plans in (node.exec_args, node.revert_args) for p in plans if p.symbol in missing
        )
    if len(problems) == 1 and not hasattr(flow, "iter_nodes"):
        return problems[0]
    raised = exc.MissingDependencies(flow, everything, cause=problems[-1])
    at_fault = "; ".join(f"{_at_fault(p)} needs symbols {p.missing}" for p in problems)
    raised.args = (f"{raised.message} (atoms: {at_fault})",)
    raised.atom = problems[0].atom
    raised.missing = sorted(set().union(*(p.missing for p in problems)))
    return raised


def _atom_error(
    node: Node, missing: set[str], cause: exc.MissingDependencies | None, method: str | None
) -> exc.MissingDependencies:
    """The error of one atom whose arguments nothing provides (a loop's ``until``: its loop's)."""
    if _steering.LOOPS:
        from flowkit.engines import _loops  # only when a loop class was ever imported

        loop = _loops.loop_answered_by(node)
        if loop is not None:
            return _loops.until_needs(loop, missing, cause)
    return exc.MissingDependencies(node.atom, missing, cause=cause, method=method)


def _at_fault(error: exc.MissingDependencies) -> str:
    """How a flow's error names one atom at fault: by name, or a loop by its predicate."""
    if isinstance(error.who, Atom):
        return f"'{error.atom}'"
    return f"the until predicate of loop '{error.atom}'"
