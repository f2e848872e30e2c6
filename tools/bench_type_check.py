"""What the compile's type check and its pre-checks cost, per edge and per atom.

    python tools/bench_type_check.py            # 1,000 atoms
    python tools/bench_type_check.py --n 10000

Rows (best of several runs, in this process, after a warm-up compile so that
contracts and profiles are cached as in a long-lived process):

* ``check linear``: :func:`flowkit.typed.check_compilation` of a chain whose
  tasks take ``x: int`` and return ``int`` (N - 1 edges, each a named argument).
* ``check fan-in``: the same over N tasks returning ``int`` whose results one
  task takes through ``def execute(self, **values: int)`` (``requires`` names
  them all: N edges into ``**values``). Such a flow is what
  ``tools/bench_peers.py``'s fan-out compiles.
* ``compile fan-in``: ``engine.compile()`` of that flow end to end, type check
  on and off (``check_types=False``). Every annotation there names ``int``, so
  the engine's pre-check skips the check (no edge can mismatch);
  ``compile mixed`` is the same fan-in with leaves returning ``bool``, which
  the check compares edge by edge (a bool is an int).
* ``class walks`` (on the fan-in): the walks over every atom that
  ``ActionEngine.compile`` makes before it imports the check or the guards: the
  set of the atoms' classes (which it hands on to both, so that neither walks
  the atoms for it again), ``may_check_types`` and ``may_guard``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from _best_time import best

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flowkit import engines, task, typed
from flowkit.engines._compiler import compile_flow
from flowkit.engines._engine import may_check_types, may_guard
from flowkit.patterns import graph_flow, linear_flow


class Step(task.Task):
    def execute(self, x: int) -> int:
        return x + 1


class Leaf(task.Task):
    def execute(self) -> int:
        return 1


class BoolLeaf(task.Task):
    def execute(self) -> bool:
        return True


class Total(task.Task):
    def execute(self, **values: int) -> int:
        return sum(values.values())


def chain(n: int) -> linear_flow.Flow:
    return linear_flow.Flow("chain").add(
        *(Step(f"t{i}", provides=f"x{i + 1}", rebind={"x": f"x{i}"}) for i in range(n))
    )


def fan_in(n: int, leaf: type[task.Task] = Leaf) -> graph_flow.Flow:
    leaves = [leaf(f"t{i}", provides=f"v{i}") for i in range(n)]
    total = Total("total", provides="total", requires=[f"v{i}" for i in range(n)])
    return graph_flow.Flow("fan-in").add(*leaves, total)


def _load_and_compile(flow: graph_flow.Flow, check_types: bool) -> None:
    engines.load(flow, check_types=check_types).compile()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000, help="atoms per flow (default 1,000)")
    parser.add_argument("--repeat", type=int, default=200, help="runs per row; the best is kept")
    args = parser.parse_args()
    n, repeat = args.n, args.repeat
    us = 1e6
    for label, flow, edges in (("linear", chain(n), n - 1), ("fan-in", fan_in(n), n)):
        compilation = compile_flow(flow)
        typed.check_compilation(compilation)  # warm: contracts read once per function
        spent = best(functools.partial(typed.check_compilation, compilation), repeat)
        print(f"check {label:7} {n:>7} {spent * 1e3:8.3f} ms {spent / edges * us:7.3f} us/edge")
    for label, flow in (("fan-in", fan_in(n)), ("mixed", fan_in(n, BoolLeaf))):
        for option in (True, False):
            engines.load(flow, store={}, check_types=option).compile()
            spent = best(functools.partial(_load_and_compile, flow, option), max(repeat // 10, 5))
            print(f"compile {label:6} {n:>7} check_types={option!s:5} {spent * 1e3:8.3f} ms")
    atoms = compile_flow(fan_in(n)).atoms
    classes = {type(node.atom) for node in atoms}
    rows = (
        ("class set", lambda: {type(node.atom) for node in atoms}),
        ("may_check_types", lambda: may_check_types(atoms, classes)),
        ("may_guard", lambda: may_guard(atoms, classes, {})),
    )
    for label, fn in rows:
        spent = best(fn, repeat)
        print(f"class walks {label:18} {n:>7} {spent * 1e3:8.3f} ms")


if __name__ == "__main__":
    main()
