"""Where the time of the peer benchmark's sleeping-tasks workload goes, per library.

    python tools/bench_sleep_timeline.py [--runs 5] [--n 200] [--threads 32] [--only flowkit,dask-graph]

``tools/bench_peers.py`` reports one figure for "N tasks sleeping 10 ms on
THREADS threads": the whole run. Two libraries can reach the same figure in
different ways (a slow start, or slow waves), and only a timeline tells which.
This tool runs the same workload with the same child code
(``tools/_bench_peers_child.py``: same imports, same ``Setup``, same runner),
in a fresh interpreter per run started as ``bench_peers.py`` starts its
children (``tools/_bench_peers_run.py``: same environment, one untimed run per
library first so that it runs from compiled bytecode), with ``nap`` replaced
by one that also notes
when each sleep started and ended and on which thread. From that it reports,
median of the runs, in milliseconds after the timer started:

``critical start``
    when the first sleep of the *critical thread* started: the thread whose
    last sleep ended last. Everything before it is start-up (building,
    loading, compiling, starting threads).
``waves``
    from there to the end of the last sleep, and how many sleeps that
    thread ran back to back (``tasks``).
``mean sleep``
    how long a 10 ms sleep took on average (the machine's timer slack and the
    wait for the GIL after waking).
``after``
    from the end of the last sleep to the run returning its result.
``total``
    the whole run, as ``bench_peers.py`` times it.

A figure, not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_peers_run import run_child

__all__ = ["Timeline", "main", "measure", "timeline"]

_HERE = Path(__file__).resolve()
DEFAULT_LIBRARIES = ("flowkit", "dask-graph", "floor-graphlib-pool")


class Sleep(NamedTuple):
    """One sleep of the workload: its thread and its start and end (perf_counter seconds)."""

    thread: int
    start: float
    end: float


class Timeline(NamedTuple):
    """One run's breakdown, in seconds after the timer started."""

    critical_start: float
    waves: float
    tasks: int
    mean_sleep: float
    after: float
    total: float


def timeline(begin: float, finished: float, sleeps: list[Sleep]) -> Timeline:
    """Break a run down around its critical thread (the one whose last sleep ended last)."""
    if not sleeps:
        raise ValueError("the run made no sleeps")
    by_thread: dict[int, list[Sleep]] = {}
    for sleep in sleeps:
        by_thread.setdefault(sleep.thread, []).append(sleep)
    critical = max(by_thread.values(), key=lambda own: max(s.end for s in own))
    first = min(s.start for s in critical)
    last = max(s.end for s in critical)
    return Timeline(
        critical_start=first - begin,
        waves=last - first,
        tasks=len(critical),
        mean_sleep=statistics.fmean(s.end - s.start for s in sleeps),
        after=finished - last,
        total=finished - begin,
    )


def _child(library: str, n: int, threads: int) -> dict[str, Any]:
    """In a fresh interpreter: the workload as bench_peers' child runs it, each sleep noted."""
    import _thread

    import _bench_peers_child as child

    sleeps: list[Sleep] = []
    seconds = child.SLEEP_S

    def nap() -> int:
        start = time.perf_counter()
        time.sleep(seconds)
        sleeps.append(Sleep(_thread.get_ident(), start, time.perf_counter()))
        return 1

    child.nap = nap  # every runner looks nap up when it runs
    with tempfile.TemporaryDirectory(prefix="bench-timeline-") as tmp:
        setup = child.Setup("sleep", n, threads, Path(tmp))
        runner = child.LIBRARIES[library]()
        runner.setup(setup)
        gc.collect()
        begin = time.perf_counter()
        value = runner.run(setup)
        finished = time.perf_counter()
    if value != n:
        raise AssertionError(f"{library} computed {value!r}, expected {n}")
    return {"ok": True, **timeline(begin, finished, sleeps)._asdict()}


def measure(library: str, n: int, threads: int) -> Timeline:
    """One run of ``library`` in a fresh interpreter."""
    result = run_child(
        ["--child", library, "--n", str(n), "--threads", str(threads)], timeout=300, script=_HERE
    )
    if not result.pop("ok", False):
        raise RuntimeError(f"{library}: the child failed: {result.get('error')}")
    return Timeline(**result)


def _median(runs: list[Timeline]) -> Timeline:
    return Timeline(*(statistics.median(values) for values in zip(*runs, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per library (median kept)")
    parser.add_argument("--n", type=int, default=200, help="sleeping tasks")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument(
        "--only", default=",".join(DEFAULT_LIBRARIES), help="comma-separated libraries of bench_peers"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.n, args.threads)))
        return 0
    libraries = [name for name in args.only.split(",") if name]
    for name in libraries:  # untimed: fills the bytecode cache, as bench_peers' warm-up does
        measure(name, args.n, args.threads)
    runs: dict[str, list[Timeline]] = {name: [] for name in libraries}
    for _ in range(args.runs):  # interleaved, as bench_peers does
        for name in libraries:
            runs[name].append(measure(name, args.n, args.threads))
    print(f"{args.n} tasks sleeping 10 ms on {args.threads} threads", end="; ")
    print(f"ms after the timer, median of {args.runs} runs")
    header = ("critical start", "waves", "tasks", "mean sleep", "after", "total")
    print(f"{'library':>20}  " + "  ".join(f"{h:>14}" for h in header))
    for name in libraries:
        m = _median(runs[name])
        row = (m.critical_start, m.waves, m.tasks, m.mean_sleep, m.after, m.total)
        cells = [f"{v * 1000:14.2f}" if i != 2 else f"{v:14.0f}" for i, v in enumerate(row)]
        print(f"{name:>20}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
