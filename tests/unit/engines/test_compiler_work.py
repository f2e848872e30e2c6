"""Building and compiling a flow does work linear in its size, for every common shape.

Counted, not timed: the number of Python bytecodes executed (``sys.settrace``
with opcode events) while a flow of ``n`` and of ``4 n`` atoms is put together
and compiled. Linear work makes the second count at most four times the first
(plus a little slack for the sets and dicts that grow); a walk repeated per
atom (a quadratic compile, as issue 14 found for fan-ins) makes it about
sixteen times. Work done inside C functions (``sorted``, dict and set
operations) is not counted, so this guards the Python-level walks only; the
benchmarks (``tools/bench_peers.py``, compile table) time the rest.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from flowkit import task
from flowkit.engines._compiler import compile_flow
from flowkit.patterns import graph_flow, linear_flow, unordered_flow

SMALL = 150
#: 4x the atoms may cost at most this many times the bytecodes.
BOUND = 4.6


class Node(task.Task):
    def execute(self, **kwargs: Any) -> None:
        """Never called: only building and compiling are counted."""


def _linear(n: int) -> tuple[list[Node], Callable[[list[Node]], Any]]:
    atoms = [Node(f"t{i}", provides=f"x{i + 1}", requires=[f"x{i}"]) for i in range(n)]
    return atoms, lambda items: linear_flow.Flow("linear").add(*items)


def _fanout(n: int) -> tuple[list[Node], Callable[[list[Node]], Any]]:
    atoms = [Node("src", provides="x0")]
    atoms += [Node(f"t{i}", provides=f"v{i}", requires=["x0"]) for i in range(n)]
    return atoms, lambda items: graph_flow.Flow("fanout").add(*items)


def _fanin(n: int) -> tuple[list[Node], Callable[[list[Node]], Any]]:
    atoms = [Node(f"t{i}", provides=f"v{i}") for i in range(n)]
    atoms.append(Node("sink", requires=[f"v{i}" for i in range(n)]))
    return atoms, lambda items: graph_flow.Flow("fanin").add(*items)


def _dag(n: int) -> tuple[list[Node], Callable[[list[Node]], Any]]:
    rng = random.Random(n)
    atoms = []
    for i in range(n):
        preds = sorted(rng.sample(range(i), rng.randint(0, min(3, i))))
        atoms.append(Node(f"t{i}", provides=f"d{i}", requires=[f"d{p}" for p in preds]))
    return atoms, lambda items: graph_flow.Flow("dag").add(*items)


def _nested(n: int) -> tuple[list[Node], Callable[[list[Node]], Any]]:
    """Groups of four: a graph flow of two unordered pairs, in a linear flow, each reading the last group."""
    atoms = []
    for g in range(n // 4):
        need = [f"g{g - 1}a"] if g else []
        atoms += [
            Node(f"g{g}a", provides=f"g{g}a", requires=need),
            Node(f"g{g}b", provides=f"g{g}b", requires=need),
            Node(f"g{g}c", requires=[f"g{g}a", f"g{g}b"]),
            Node(f"g{g}d", requires=[f"g{g}a"]),
        ]

    def build(items: list[Node]) -> Any:
        outer = linear_flow.Flow("outer")
        for g in range(0, len(items), 4):
            a, b, c, d = items[g : g + 4]
            pair = unordered_flow.Flow(f"p{g}").add(a, b)
            outer.add(graph_flow.Flow(f"g{g}").add(pair, c, d))
        return outer

    return atoms, build


def _chain_end(n: int) -> tuple[list[Node], Callable[[list[Node]], Any]]:
    """A chain of links; each of n readers hangs off its last item and reads one item of it.

    The providers are reached only through the chain (no reader is linked from
    its provider), which a walk per reader would make quadratic.
    """
    chain = [Node(f"t{i}", provides=f"x{i}") for i in range(n)]
    readers = [Node(f"r{i}", requires=[f"x{i}"]) for i in range(n)]

    def build(items: list[Node]) -> Any:
        flow = graph_flow.Flow("chain").add(*items, resolve_requires=False)
        for before, after in zip(chain, chain[1:], strict=False):
            flow.link(before, after)
        for reader in readers:
            flow.link(chain[-1], reader)
        return flow

    return chain + readers, build


SHAPES = {
    "linear": _linear,
    "fanout": _fanout,
    "fanin": _fanin,
    "dag": _dag,
    "nested": _nested,
    "chain-end": _chain_end,
}


def _bytecodes(work: Callable[[], Any]) -> int:
    """How many bytecodes ``work()`` executes (in Python frames, nested calls included)."""
    count = 0

    def trace(frame: FrameType, event: str, _arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        work()
    finally:
        sys.settrace(previous)
    return count


def _build_and_compile(shape: str, n: int) -> int:
    atoms, build = SHAPES[shape](n)
    return _bytecodes(lambda: compile_flow(build(atoms)))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_building_and_compiling_work_grows_linearly(shape: str) -> None:
    _build_and_compile(shape, 8)  # first-use work (class profiles, caches) out of the way
    small, large = _build_and_compile(shape, SMALL), _build_and_compile(shape, 4 * SMALL)
    ratio = large / small
    assert large <= BOUND * small, f"{shape}: {small} -> {large} bytecodes ({ratio:.2f}x for 4x atoms)"


class _Symbol(str):
    """A symbol that counts how often it is compared: scans made in C call this ``__eq__``."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _Symbol.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


class _Reader(task.Task):
    """Its own class: a class remembers its atoms' symbols, so plain ones read before could be reused."""

    def execute(self, **kwargs: Any) -> None:
        """Never called: only compiling is counted."""


def _symbol_comparisons(shape: str, n: int) -> int:
    """How many times compiling compares a required symbol with another (list scans included)."""
    if shape == "fanin":
        atoms = [_Reader(f"t{i}", provides=f"v{i}") for i in range(n)]
        atoms.append(_Reader("sink", requires=[_Symbol(f"v{i}") for i in range(n)]))
    else:
        rng = random.Random(n)
        atoms = []
        for i in range(n):
            preds = rng.sample(range(i), rng.randint(0, min(3, i)))
            atoms.append(_Reader(f"t{i}", provides=f"d{i}", requires=[_Symbol(f"d{p}") for p in preds]))
    flow = graph_flow.Flow(shape).add(*atoms)
    _Symbol.compared = 0
    compile_flow(flow)
    return _Symbol.compared


@pytest.mark.parametrize("shape", ["fanin", "dag"])
def test_compiling_compares_symbols_a_number_of_times_linear_in_the_links(shape: str) -> None:
    # Bytecode counts miss a scan of a list done in C (``x in symbols``): a str
    # subclass whose __eq__ is Python shows each comparison such a scan makes.
    small, large = _symbol_comparisons(shape, SMALL), _symbol_comparisons(shape, 4 * SMALL)
    assert large <= BOUND * small + 16, f"{shape}: {small} -> {large} symbol comparisons for 4x atoms"
