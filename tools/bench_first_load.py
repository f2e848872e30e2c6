"""How much of a fresh process's first parallel run is the engine's import, and how much the rest.

    python tools/bench_first_load.py [--pairs 6] [--n 200] [--threads 32]

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

A figure, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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


def _measure(n: int, threads: int, preimport: bool) -> dict[str, Any]:
    """One fresh interpreter's figures (ms), and the modules ``engines.load`` imported."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), str(threads), "1" if preimport else "0"],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env=child_env(),
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6, help="fresh-process pairs, interleaved (6)")
    parser.add_argument("--n", type=int, default=200, help="sleeping tasks (200)")
    parser.add_argument("--threads", type=int, default=32, help="engine threads (32)")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
