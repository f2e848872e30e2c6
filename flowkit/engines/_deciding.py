"""Deciders: asking a graph flow's link deciders whether an atom runs (:meth:`Runtime.decide`).

The runtime makes a :class:`Deciding` on its first decision. A flow without
deciders never asks, so this module is imported then rather than with the
runtime: every engine module costs the first ``engines.load`` of a process its
import (doc/benchmarks.rst).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkit import states as st
from flowkit._utils.records import Record
from flowkit.deciders import Depth
from flowkit.engines._compiler import Node
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    from flowkit.engines._runtime import Runtime

__all__ = ["Deciding", "IgnoreCause"]

#: Depths from the widest to the narrowest: when several links say no, the widest applies.
_WIDEST_FIRST = (Depth.ALL, Depth.FLOW, Depth.NEIGHBORS, Depth.ATOM)


class IgnoreCause(Record):
    """Which link decision skipped an atom (put it in IGNORE).

    Attributes:
        sources: the atoms (or flows) on the links whose decider returned False.
        target: the atom (or flow) those links lead into.
        depth: the decider depth applied (``ALL``, ``FLOW``, ``NEIGHBORS``,
            ``ATOM``): an atom other than ``target`` was skipped because it
            reaches that far.
    """

    sources: tuple[str, ...]
    target: str
    depth: str


class Deciding:
    """A runtime's link decisions: whether the deciders on the links into an atom let it run.

    Args:
        runtime: the runtime whose records it reads and whose skips it explains.
    """

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def decide(self, node: Node) -> Depth | None:
        """Ask the deciders of the links into ``node``; the depth to skip at, or None to run it.

        A decider that raises halts the run, which then raises what it raised, as
        TaskFlow's does. Deciders are asked while an outcome is taken in (see
        :meth:`Scheduler._admit`), so it is kept rather than raised there: the
        other outcomes of the step are still taken in and stored, and nothing
        else is decided or started.
        """
        runtime = self._runtime
        history: dict[str, Any] = {}
        records = runtime.records
        nodes = runtime.compilation.nodes
        for edge in node.deciders:
            record = records[edge.source]
            if record is not None and record.state != st.IGNORE:
                history[nodes[edge.source].name] = record.failure or record.result
        nays: list[tuple[Depth, str]] = []
        for edge in node.deciders:
            source = nodes[edge.source]
            if source.atom is not None and source.name not in history:
                continue  # an ignored atom has no say
            try:
                said = edge.decider(history=history)
            except Exception:
                runtime.scheduler.halted = True
                runtime.retained.append(Failure())
                return None
            if not said:
                nays.append((edge.depth, _user_name(source)))
        if not nays:
            runtime._skipping = None
            return None
        depth = min((d for d, _ in nays), key=_WIDEST_FIRST.index)
        # Kept for the IGNOREs the scheduler records next: the event log says which
        # link skipped each atom (the widest depth's, which is the one applied).
        runtime._skipping = IgnoreCause(
            sources=tuple(name for d, name in nays if d == depth), target=_user_name(node), depth=str(depth)
        )
        return depth


def _user_name(node: Node) -> str:
    """The name a user gave ``node``: its atom's, or for a nested flow's start or end, the flow's.

    A link into or out of a flow ends on the compiler's barrier nodes
    (``sub^start``, ``sub^end``), which no user wrote.
    """
    return node.name if node.atom is not None else node.scope.name
