"""The engine's checks that a plain run in memory never reaches.

Two questions only some runs ask before they start: whether every atom of a
persisted run has a name its records can be found by on resume
(:func:`check_stored_names`), and, for the compile's type check
(:mod:`flowkit.typed`), whether an injected value replaces a provider's result
(:func:`injected_for`, asked only of an edge whose declared types do not match).
A run in memory whose annotated edges all match asks neither, so this is
imported on first use rather than with the engine: the first-load cost,
``doc/benchmarks.rst``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc

if TYPE_CHECKING:
    from flowkit._run_state import RunState
    from flowkit.engines._compiler import Node

__all__ = ["check_stored_names", "injected_for"]


def check_stored_names(nodes: Sequence[Any], flow_name: str) -> None:
    """Refuse, naming it, an atom whose name is not a string in a persisted run.

    A run in memory takes any name, as TaskFlow does. A stored atom detail's name is
    text (a SQL column, a JSON field), so on resume an atom named ``1`` would not
    find its record ``"1"`` and would run again (TaskFlow then re-runs finished atoms
    or fails with ``KeyError``): refused before anything runs instead.

    Raises:
        InvalidFormat: the first such atom, by name and type.
    """
    for node in nodes:
        name = node.name
        if not isinstance(name, str):
            raise exc.InvalidFormat(
                f"atom {name!r} of flow '{flow_name}' has a name of type {type(name).__name__}; "
                "a persisted run needs string atom names (its records are looked up by name on resume)"
            )


def injected_for(
    node: Node, symbol: str, run_state: RunState, load_inject: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Whether an injected value gives ``node``'s atom ``symbol``, whatever provides it.

    At run time an atom's own ``inject``, ``engines.load``'s ``inject=`` and
    the store win over a provider's result (as in TaskFlow), so the type
    check has no provider to compare for such a symbol.

    Args:
        run_state: the run's state (its store, and values injected in an earlier run).
        load_inject: ``engines.load``'s ``inject=``, not yet given to the records.
    """
    own = node.atom.inject  # type: ignore[union-attr]
    if own and symbol in own:
        return True
    if symbol in run_state.store:
        return True
    record = run_state.records.get(node.name)
    if record is not None and record.injected and symbol in record.injected:
        return True  # injected in an earlier run (a resume) or by storage.inject_atom_args
    given = load_inject.get(node.name)
    return given is not None and symbol in given
