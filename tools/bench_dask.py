"""Throughput of the parallel engine on a Dask cluster, against Dask's own API.

    python tools/bench_dask.py [--tasks 1000] [--rounds 3] [--workers 2]

Starts a ``distributed.LocalCluster`` of worker processes (one thread each) and
runs the same work three ways, interleaved, ``--rounds`` times:

``flowkit``
    an unordered flow of ``--tasks`` independent no-op tasks on
    ``engine="parallel", executor=client.get_executor()``, built, loaded and run;
``client.map``
    Dask's fastest way to send independent calls: one graph for all of them;
``submit each``
    ``executor.submit`` once per call, each call a graph of its own (what the
    engine did before it sent each scheduling round as one graph).

It prints the median wall time of each, in seconds, and flowkit's ratio to
``client.map``. Every result is checked. Run it as a script: its functions
and task class then travel to the workers by value (the workers cannot import
it). A figure, not a test: the cluster's
scheduler and workers share the machine's cores with this process, so run it on
a quiet machine. Needs ``flowkit[dask]``.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["main"]


def _noop(value: int) -> int:
    return value


def _flowkit_run(executor: Any, tasks: int) -> float:
    from flowkit import engines, task
    from flowkit.patterns import unordered_flow

    class Echo(task.Task):  # defined here, sent by value: the workers need no module of ours
        def execute(self, value: int) -> int:
            return _noop(value)

    started = time.perf_counter()
    flow = unordered_flow.Flow("echo").add(
        *(Echo(name=f"t{i}", provides=f"r{i}", inject={"value": i}) for i in range(tasks))
    )
    engine = engines.load(flow, engine="parallel", executor=executor)
    engine.run()
    elapsed = time.perf_counter() - started
    fetch = engine.storage.fetch
    if [fetch(f"r{i}") for i in range(tasks)] != list(range(tasks)):
        raise AssertionError("flowkit returned wrong results")
    return elapsed


def _map_run(client: Any, tasks: int) -> float:
    started = time.perf_counter()
    futures = client.map(_noop, range(tasks), pure=False)
    values = client.gather(futures)
    elapsed = time.perf_counter() - started
    if values != list(range(tasks)):
        raise AssertionError("client.map returned wrong results")
    return elapsed


def _submit_run(executor: Any, tasks: int) -> float:
    started = time.perf_counter()
    futures = [executor.submit(_noop, i, pure=False) for i in range(tasks)]
    values = [future.result() for future in futures]
    elapsed = time.perf_counter() - started
    if values != list(range(tasks)):
        raise AssertionError("submit returned wrong results")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        # Typed Any: distributed's API is untyped.
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        print("needs distributed: pip install 'flowkit[dask]'", file=sys.stderr)
        return 2
    cluster = distributed.LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    try:
        executor = client.get_executor()
        ways: dict[str, Callable[[], float]] = {
            "flowkit": lambda: _flowkit_run(executor, args.tasks),
            "client.map": lambda: _map_run(client, args.tasks),
            "submit each": lambda: _submit_run(executor, args.tasks),
        }
        for run in ways.values():  # warm-up: imports, the workers' first calls
            run()
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, run in ways.items():
                times[name].append(run())
        print(f"{args.tasks} no-op tasks on a LocalCluster of {args.workers} worker processes")
        for name, measured in times.items():
            rounds = " ".join(f"{value:.2f}" for value in measured)
            print(f"{name:>12}: median {statistics.median(measured):.2f} s  (rounds {rounds})")
        ratio = statistics.median(times["flowkit"]) / statistics.median(times["client.map"])
        print(f"flowkit / client.map: {ratio:.2f}x")
    finally:
        client.close()
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
