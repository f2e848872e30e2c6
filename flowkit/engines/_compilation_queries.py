"""What a compiled flow answers to callers outside the run.

TaskFlow's ``execution_graph`` (a graph of the atoms, for drawing and for
programs written against TaskFlow) and the provider an atom sees by name (what
``storage.fetch_mapped_args(..., atom_name=...)`` reads). The engine never asks
either while it runs a flow, so this module is imported on first use: each
module the first ``engines.load`` imports costs a fresh process time
(doc/benchmarks.rst, the first load).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowkit.engines._compiler import RETRY

if TYPE_CHECKING:
    from flowkit.engines._compiler import Compilation

__all__ = ["execution_graph", "visible_provider"]


def execution_graph(compilation: Compilation) -> Any:
    """The atoms of ``compilation`` as a DiGraph (see ``Compilation.execution_graph``)."""
    from flowkit.types.graph import DiGraph

    graph = DiGraph()
    nodes = compilation.nodes
    for node in compilation.atoms:
        graph.add_node(node.atom, kind="retry" if node.kind == RETRY else "task")
    for node in compilation.atoms:
        # Follow edges through the virtual flow nodes to the next atoms.
        seen: set[int] = set()
        stack = list(node.succ)
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            target = nodes[index]
            if target.atom is not None:
                graph.add_edge(node.atom, target.atom)
            else:
                stack.extend(target.succ)
    return graph


def visible_provider(
    compilation: Compilation, atom_name: str, symbol: str, has_result: Callable[[str], bool]
) -> str | None:
    """The nearest atom visible to ``atom_name`` that holds ``symbol`` now (see ``Compilation``)."""
    node = next((n for n in compilation.atoms if n.name == atom_name), None)
    if node is None:
        return None
    nodes = compilation.nodes
    found = compilation.resolve(node, symbol, lambda index: not has_result(nodes[index].name))
    return nodes[found].name if found >= 0 else None
