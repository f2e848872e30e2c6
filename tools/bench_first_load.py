"""How much of a fresh process's first parallel run is the engine's import, and how much the rest.

    python tools/bench_first_load.py [--pairs 6] [--n 200] [--threads 32] [--anatomy]

The peer benchmark's sleeping-tasks row (``tools/bench_peers.py``) times
building a flow of N tasks that sleep 10 ms, ``engines.load`` and the run, in
a fresh interpreter, after ``import flowkit.engines``. flowkit imports its
engine's modules on the first ``engines.load``, inside that timed region;
Dask's child imports its scheduler modules (``dask.threaded``) before the
timer. This tool runs the same script in fresh interpreters in pairs: once
as a program does it, once with the engine's modules imported before the
timer, and prints, in milliseconds after the timer started: building the
flow, ``engines.load``, from ``run()`` to the first task's call, and when
that call began; then how many modules ``engines.load`` imported. The
difference between the two rows is the import.

With ``--anatomy`` it also splits that import (fresh interpreters, the
collector paused as ``engines.load`` pauses it): finding the modules, reading
their bytecode files, unmarshalling the bytecode, running the module bodies,
and the rest of the import system's own work. Beside it, the same number of
empty modules of a throw-away package imported the same way: what CPython's
import system costs per module on this machine, whatever the module holds.
The two together say how much of the import a smaller engine could save,
and how much only fewer modules could.

A figure, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _child_env import child_env

__all__ = ["main"]

#: The measured script, run as ``python -c`` in a fresh interpreter: N, THREADS, PREIMPORT.
_CHILD = """
import gc, json, sys, time
import flowkit.engines as engines
import flowkit.task as task
from flowkit.patterns import unordered_flow
n, threads, preimport = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if preimport:
    import flowkit.engines._completions, flowkit.engines._engine, flowkit.engines.parallel
calls = []
class Nap(task.Task):
    def execute(self):
        calls.append(time.perf_counter())
        time.sleep(0.01)
        return 1
gc.collect()
t0 = time.perf_counter()
flow = unordered_flow.Flow("sleep").add(*(Nap(name=f"t{i}", provides=f"s{i}") for i in range(n)))
t1 = time.perf_counter()
before = set(sys.modules)
engine = engines.load(flow, engine="parallel", max_workers=threads)
t2 = time.perf_counter()
imported = sorted(set(sys.modules) - before)
engine.run()
t3 = time.perf_counter()
assert sum(engine.storage.fetch(f"s{i}") for i in range(n)) == n
ms = lambda a, b: (b - a) * 1e3
print(json.dumps({"build": ms(t0, t1), "load": ms(t1, t2), "to_first_call": ms(t2, calls[0]),
                  "first_call": ms(t0, calls[0]), "total": ms(t0, t3), "imported": imported}))
"""

_COLUMNS = ("build", "load", "to_first_call", "first_call", "total")

#: The import's anatomy, run as ``python -c`` in a fresh interpreter: EMPTY_DIR, COUNT.
#: Times the engine's modules as ``engines.load`` imports them (collector paused),
#: split by wrapping the import system's steps, then COUNT empty modules of the
#: package ``fk_empty`` in EMPTY_DIR imported the same way.
_ANATOMY = """
import gc, importlib, json, marshal, sys, time
import importlib._bootstrap_external as external
import importlib.machinery as machinery
import flowkit.engines, flowkit.task
from flowkit.patterns import graph_flow, linear_flow, unordered_flow
from flowkit._utils.gc_pause import gc_paused
empty_dir, count = sys.argv[1], int(sys.argv[2])
clock = time.perf_counter
spent = {"find": 0.0, "read": 0.0, "unmarshal": 0.0, "bodies": 0.0}
def timed(key, fn):
    def wrapper(*args, **kwargs):
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] += clock() - start
    return wrapper
finder = machinery.PathFinder
finder.find_spec = classmethod(timed("find", finder.find_spec.__func__))
machinery.SourceFileLoader.get_data = timed("read", machinery.SourceFileLoader.get_data)
loads = timed("unmarshal", marshal.loads)
external.marshal = type("timed_marshal", (), {"loads": staticmethod(loads), "dumps": marshal.dumps})
# One entry per import under way: the time its body spent importing other modules.
children = [0.0]
bootstrap = importlib._bootstrap
find_and_load = bootstrap._find_and_load
def counted_find_and_load(name, import_):
    start = clock()
    children.append(0.0)
    try:
        return find_and_load(name, import_)
    finally:
        children.pop()
        children[-1] += clock() - start
bootstrap._find_and_load = counted_find_and_load
def exec_module(self, module):
    # A module body's own time: the modules it imports are counted where they belong.
    code = self.get_code(module.__name__)
    before = children[-1]
    start = clock()
    exec(code, module.__dict__)
    spent["bodies"] += clock() - start - (children[-1] - before)
machinery.SourceFileLoader.exec_module = exec_module
def imported(names):
    before = dict(spent)
    gc.collect()
    start = clock()
    with gc_paused():
        for name in names:
            importlib.import_module(name)
    total = clock() - start
    split = {key: spent[key] - before[key] for key in spent}
    split["bookkeeping"] = total - sum(split.values())
    return total, split
before = set(sys.modules)
engine_total, engine_split = imported(["flowkit.engines.parallel", "flowkit.engines._engine"])
modules = len(set(sys.modules) - before)
empty_total = 0.0
if count:
    sys.path.insert(0, empty_dir)
    import fk_empty
    empty_total, _ = imported([f"fk_empty.m{i}" for i in range(count)])
print(json.dumps({"modules": modules, "engine": engine_total * 1e3,
                  **{key: value * 1e3 for key, value in engine_split.items()},
                  "empty": empty_total * 1e3}))
"""
_PARTS = ("find", "read", "unmarshal", "bodies", "bookkeeping")


def _child(script: str, *args: object) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter from the checkout's root; the JSON line it prints last."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env=child_env(),
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _measure(n: int, threads: int, preimport: bool) -> dict[str, Any]:
    """One fresh interpreter's figures (ms), and the modules ``engines.load`` imported."""
    return _child(_CHILD, n, threads, "1" if preimport else "0")


def _anatomy(empty_dir: Path, count: int) -> dict[str, Any]:
    """One fresh interpreter's split of the engine's import, and ``count`` empty modules' import (ms)."""
    return _child(_ANATOMY, empty_dir, count)


def _empty_package(where: Path, count: int) -> None:
    """A package ``fk_empty`` of ``count`` modules that each hold one assignment."""
    package = where / "fk_empty"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for index in range(count):
        (package / f"m{index}.py").write_text("x = 1\n")


def _print_anatomy(pairs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-first-load-") as tmp:
        empty_dir = Path(tmp)
        count = _anatomy(empty_dir, 0)["modules"]  # untimed: learns the count
        _empty_package(empty_dir, count)
        _anatomy(empty_dir, count)  # untimed: compiles the empty modules' bytecode
        runs = [_anatomy(empty_dir, count) for _ in range(pairs)]
    median = {key: statistics.median(run[key] for run in runs) for key in ("engine", "empty", *_PARTS)}
    parts = " + ".join(f"{key} {median[key]:.2f}" for key in _PARTS)
    print(f"\nthe engine's import ({count} modules, collector paused), ms, median of {pairs}:")
    print(f"  {median['engine']:.2f} = {parts}")
    print(
        f"  {count} empty modules imported the same way: {median['empty']:.2f}"
        f" ({median['empty'] / count * 1e3:.0f} µs per module)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6, help="fresh-process pairs, interleaved (6)")
    parser.add_argument("--n", type=int, default=200, help="sleeping tasks (200)")
    parser.add_argument("--threads", type=int, default=32, help="engine threads (32)")
    parser.add_argument("--anatomy", action="store_true", help="also split the engine's import")
    args = parser.parse_args(argv)
    _measure(args.n, args.threads, False)  # untimed: compiles the bytecode a later run reads
    rows: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for _ in range(args.pairs):
        for preimport in (False, True):
            rows[preimport].append(_measure(args.n, args.threads, preimport))
    print(
        f"{args.n} tasks sleeping 10 ms on {args.threads} threads; ms after the timer, median of {args.pairs}"
    )
    print(f"{'engine modules':>28}" + "".join(f"{name:>15}" for name in _COLUMNS))
    for preimport, label in ((False, "imported by engines.load"), (True, "imported before the timer")):
        medians = [statistics.median(row[name] for row in rows[preimport]) for name in _COLUMNS]
        modules = max(len(row["imported"]) for row in rows[preimport])
        print(f"{label:>28}" + "".join(f"{value:>15.2f}" for value in medians) + f"  ({modules} modules)")
    if args.anatomy:
        _print_anatomy(args.pairs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
