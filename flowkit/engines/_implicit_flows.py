"""The flows the compiler makes up itself, around atoms that come without one.

Two cases: an atom given to the engine on its own (``engines.load(task)``)
gets a one-atom scope, and a task with its own ``retry=`` stands for a linear
flow of that task alone under a copy of the controller. A successful run of
a flow the user built, with no such task, needs neither, so this module is
imported on first use: each module the first ``engines.load`` imports costs
a fresh process time (doc/benchmarks.rst, the first load), and making the
own-retry flow class needs :mod:`flowkit.patterns.linear_flow` imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkit.engines import _compiler
from flowkit.patterns import linear_flow
from flowkit.retry import Times

if TYPE_CHECKING:
    from flowkit.atom import Atom
    from flowkit.engines._compiler import FlowScope, _Builder

__all__ = ["OwnRetryFlow", "own_retry_flow", "wrap_atom"]


class OwnRetryFlow(linear_flow.Flow):
    """The flow made for a task's own ``retry=`` (its task is not wrapped again)."""


# Wired as the linear flow it is, without reading its links.
_compiler._FIXED_ORDER[OwnRetryFlow] = _compiler._LINEAR


def own_retry_flow(atom: Any) -> linear_flow.Flow:
    """The one-task flow that a task's own ``retry=`` stands for.

    Built anew at each compile from the task, so the flow the user built is left
    as it was. The controller is copied (one ``Times(3)`` may serve several
    tasks) and, unless its owner named it, named ``<task>-retry``, like the flow.
    """
    import copy  # rarely needed: not at module level (start-up time of a lone atom's run)

    controller = atom.retry
    name = f"{atom.name}-retry"
    if isinstance(controller, int):
        controller = Times(controller, name=name)
    else:
        controller = copy.copy(controller)
        if getattr(controller, "_name_defaulted", False):
            controller.name = name
    return OwnRetryFlow(name, retry=controller).add(atom)


def wrap_atom(builder: _Builder, atom: Atom) -> FlowScope:
    """Compile an atom given on its own: a scope of that one atom (or of its own retry flow)."""
    if _compiler._kind_of(atom) == _compiler.TASK and atom.retry is not None:
        return builder.add_flow(own_retry_flow(atom), None)
    scope = _compiler.FlowScope(flow=None, name=atom.name, parent=None, mode=_compiler._LINEAR)
    scope.start = builder.add_node(_compiler.FLOW_START, f"{atom.name}^start", None, scope).index
    node = builder.add_node(_compiler._kind_of(atom), atom.name, atom, scope)
    scope.end = builder.add_node(_compiler.FLOW_END, f"{atom.name}^end", None, scope).index
    scope.children.append(node.index)
    builder.add_edge(scope.start, node.index)
    builder.add_edge(node.index, scope.end)
    _compiler._index_providers(scope, builder.nodes)
    return scope
