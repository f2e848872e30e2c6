"""Which node runs before which, where the order of making them does not tell.

The compiler numbers children and nodes as the flows give them, and for the
stock patterns that order is already a dependency order, and most readers in
a graph flow are linked straight from their providers. The rest is here: a
child's ancestors in a graph flow (:func:`precedes`), ranks for a pattern
whose items come out of link order (:func:`ranks`), and a topological sort of
nodes made out of order (:func:`topological_order`, also after a splice). A
successful run of the usual flows needs none of it, so this module is
imported on first use: each module the first ``engines.load`` imports costs a
fresh process time (doc/benchmarks.rst, the first load).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from flowkit import exceptions as exc
from flowkit.engines._compiler import _LINEAR, _UNORDERED

if TYPE_CHECKING:
    from flowkit.engines._compiler import FlowScope, Node

__all__ = ["precedes", "ranks", "topological_order"]


def precedes(scope: FlowScope, a: int, b: int) -> bool:
    """Tell whether child ``a`` of ``scope`` always finishes before child ``b`` starts.

    In a graph flow most providers are direct predecessors of their consumer
    (adding an item links it from what it requires), which is answered at once.
    Otherwise the ancestors of ``b`` are collected once and kept: a consumer
    asking about many providers (a fan-in) pays for one walk, not one each.
    A ``b`` linked from one child only asks about that child's ancestors
    instead, so many consumers hanging off one item (the end of a chain)
    share one walk rather than each making its own.
    """
    if scope.mode == _LINEAR:
        return a < b
    if scope.mode == _UNORDERED:
        return False
    direct = scope.preds_of.get(b)
    if not direct:
        return False
    if a in direct:
        return True
    rank = scope.rank
    if (a >= b) if rank is None else (rank[a] >= rank[b]):
        return False
    if len(direct) == 1:
        (b,) = direct  # a is not it: a precedes b when it precedes b's only predecessor
    ancestors = scope.ancestors_of.get(b)
    if ancestors is None:
        ancestors = scope.ancestors_of[b] = _ancestors(scope.preds_of, b)
    return a in ancestors


def _ancestors(preds_of: Mapping[int, Collection[int]], b: int) -> frozenset[int]:
    seen: set[int] = set()
    stack = [b]
    while stack:
        for p in preds_of.get(stack.pop(), ()):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return frozenset(seen)


def ranks(count: int, preds_of: Mapping[int, Collection[int]]) -> list[int]:
    """Number children ``0..count-1`` in a topological order of their links (Kahn)."""
    succ_of: list[list[int]] = [[] for _ in range(count)]
    indegree = [0] * count
    for v, preds in preds_of.items():
        indegree[v] = len(preds)
        for u in preds:
            succ_of[u].append(v)
    ready = [pos for pos in range(count) if not indegree[pos]]
    rank = [0] * count
    done = 0
    while ready:
        pos = ready.pop()
        rank[pos] = done
        done += 1
        for v in succ_of[pos]:
            indegree[v] -= 1
            if not indegree[v]:
                ready.append(v)
    # Children on a cycle keep rank 0; compile_flow's topological sort of the whole
    # graph then refuses the flow, so no answer given meanwhile is ever used.
    return rank


def topological_order(nodes: list[Node]) -> list[int]:
    """Kahn's algorithm; flows refuse cycles, so a leftover means a broken flow class."""
    indegree = [len(n.pred) for n in nodes]
    ready = [n.index for n in nodes if not n.pred]
    ready.reverse()
    order: list[int] = []
    while ready:
        index = ready.pop()
        order.append(index)
        for succ in reversed(nodes[index].succ):
            indegree[succ] -= 1
            if indegree[succ] == 0:
                ready.append(succ)
    if len(order) != len(nodes):
        stuck = sorted(n.name for n in nodes if indegree[n.index] > 0 and n.atom is not None)
        raise exc.DependencyFailure(f"the flow's links form a cycle through {stuck}")
    return order
