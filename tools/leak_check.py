#!/usr/bin/env python3
"""Run one thing thousands of times in one process and report what grew.

Conductors, workers and programs that embed engines run for weeks: whatever a
run leaves behind (an object in a module-level cache, a thread, an open file or
socket) adds up. This runs a scenario ``--runs`` times after ``--warm`` runs that
fill the caches meant to fill, and every ``--every`` runs prints the live threads
(``threading.active_count()``), the open file descriptors (``/proc/self/fd``),
the resident memory and the objects the cyclic collector tracks (after a
collection). At the end it prints the growth per 1,000 runs, the object types
that grew, and with ``--trace`` the source lines whose live allocations grew
most (tracemalloc; it slows the runs and its own bookkeeping inflates RSS).

Usage (the checkout's ``flowkit`` is put first on the path)::

    python tools/leak_check.py serial --runs 2000
    python tools/leak_check.py asyncio-fail --runs 2000 --trace
    python tools/leak_check.py cache --cache sqlite:////tmp/c.db --runs 1000
    python tools/leak_check.py backend-dict --connection sqlite:////tmp/f.db

Scenarios: ``serial``, ``parallel``, ``asyncio``, ``processes`` (a three-task
flow), their ``-fail`` forms (a failure reverted, under a retry that tries
twice) and ``listeners`` (logging and duration listeners registered and
deregistered around each run); ``cache`` (a cached task, ``--cache URL``);
``backend`` (one backend object for every run, ``--connection URL``) and
``backend-dict`` (the configuration dict each time, as TaskFlow code passes);
``classes`` (a flow factory that defines its task classes anew each time).
A flat line is the goal: a few objects more or less between two reports is the
allocator's noise; growth at every report is a leak.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowkit import engines, retry, task
from flowkit.listeners import logging as logging_listeners
from flowkit.listeners import timing
from flowkit.patterns import linear_flow
from flowkit.persistence import backends

__all__ = ["main", "measure", "scenario"]


class AddOne(task.Task):
    """``x`` plus one, as ``a``."""

    default_provides = "a"

    def execute(self, x: int) -> int:
        return x + 1


class Double(task.Task):
    """``a`` doubled, as ``b``; its revert does nothing."""

    default_provides = "b"

    def execute(self, a: int) -> int:
        return a * 2

    def revert(self, a: int, result: Any, **kwargs: Any) -> None:
        return None


class Boom(task.Task):
    """Always fails, so the flow reverts."""

    def execute(self, b: int) -> None:
        raise RuntimeError(f"boom {b}")


class Cached(task.Task):
    """A cached task (``cache = True``): its entry is read or written each run."""

    cache = True
    default_provides = "y"

    def execute(self, x: int) -> int:
        return x * 2


def _flow(fail: bool) -> linear_flow.Flow:
    flow = linear_flow.Flow("leak", retry=retry.Times(2) if fail else None)
    flow.add(AddOne("add"), Double("double"))
    if fail:
        flow.add(Boom("boom"))
    return flow


def _flow_of_new_classes() -> linear_flow.Flow:
    """A flow of a task class made just now, as a factory with its classes inside makes them."""

    class Step(task.Task):
        default_provides = "a"

        def execute(self, x: int) -> int:
            return x + 1

    return linear_flow.Flow("classes").add(Step("step"))


def scenario(name: str, args: argparse.Namespace) -> Callable[[], None]:
    """The one run ``name`` repeats (see the module docstring)."""
    kind, _, variant = name.partition("-")
    if name == "cache":
        count = iter(range(sys.maxsize))

        def cached() -> None:
            engines.run(
                linear_flow.Flow("c").add(Cached("c")), store={"x": next(count) % 50}, cache=args.cache
            )

        return cached
    if kind == "backend":
        conf = {"connection": args.connection}
        with (
            contextlib.closing(backends.fetch(conf)) as made,
            contextlib.closing(made.get_connection()) as conn,
        ):
            conn.upgrade()
        shared = backends.fetch(conf)
        return lambda: _run("serial", True, shared if variant != "dict" else conf)
    if kind == "classes":

        def with_new_classes() -> None:
            engines.run(_flow_of_new_classes(), store={"x": 1})

        return with_new_classes
    if kind == "listeners":
        return lambda: _run("serial", True, None, listened=True)
    engine = "parallel" if kind == "processes" else kind
    options = {"executor": "processes"} if kind == "processes" else {}
    return lambda: _run(engine, variant == "fail", None, options=options)


def _run(
    engine: str, fail: bool, backend: Any, listened: bool = False, options: dict[str, Any] | None = None
) -> None:
    loaded = engines.load(_flow(fail), store={"x": 1}, engine=engine, backend=backend, **(options or {}))
    listeners = (
        [logging_listeners.LoggingListener(loaded), timing.DurationListener(loaded)] if listened else []
    )
    for listener in listeners:
        listener.register()
    with contextlib.suppress(RuntimeError):
        loaded.run()
    for listener in listeners:
        listener.deregister()


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _types() -> collections.Counter[str]:
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def measure(name: str, run: Callable[[], None], runs: int, every: int, warm: int, trace: bool) -> int:
    """Run ``run`` ``warm`` then ``runs`` times, printing the counts; return the tracked objects' growth."""
    for _ in range(warm):
        run()
    gc.collect()
    types_before, objects_before = _types(), len(gc.get_objects())
    threads_before, fds_before, rss_before = threading.active_count(), _fds(), _rss_kb()
    if trace:
        tracemalloc.start(8)
    first = tracemalloc.take_snapshot() if trace else None
    print(f"{name}: threads={threads_before} fds={fds_before} rss={rss_before}kB objects={objects_before}")
    started = time.perf_counter()
    for done in range(1, runs + 1):
        run()
        if done % every == 0:
            gc.collect()
            print(
                f"  {done:>6} runs: threads={threading.active_count()} fds={_fds()} rss={_rss_kb()}kB"
                f" objects={len(gc.get_objects())} ({time.perf_counter() - started:.1f}s)",
                flush=True,
            )
    gc.collect()
    if first is not None:
        grown = tracemalloc.take_snapshot().compare_to(first, "traceback")
        tracemalloc.stop()
        del first
        for stat in grown[:8]:
            if stat.size_diff < 16_384:
                break
            print(f"  +{stat.size_diff / 1024:.1f} kB in {stat.count_diff:+} blocks allocated at:")
            print("\n".join("     " + line for line in stat.traceback.format()[-6:]))
        del grown
        gc.collect()
    growth = len(gc.get_objects()) - objects_before
    per = 1000 / runs
    print(
        f"  per 1,000 runs: objects {growth * per:+.1f}, threads "
        f"{(threading.active_count() - threads_before) * per:+.1f}, fds {(_fds() - fds_before) * per:+.1f}, "
        f"rss {(_rss_kb() - rss_before) * per:+.0f} kB"
    )
    types_after = _types()
    for type_name, count in sorted(
        ((t, n - types_before.get(t, 0)) for t, n in types_after.items()), key=lambda item: -item[1]
    )[:8]:
        if count >= max(3, runs // 50):
            print(f"  {count:+} {type_name}")
    return growth


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and measure the scenario; 0 unless the arguments are wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    names = [f"{k}{v}" for k in ("serial", "parallel", "asyncio", "processes") for v in ("", "-fail")]
    others = ["listeners", "cache", "backend", "backend-dict", "classes"]
    parser.add_argument("scenario", choices=[*names, *others])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--every", type=int, default=0, help="report every N runs (default: runs/5)")
    parser.add_argument("--warm", type=int, default=100)
    parser.add_argument("--trace", action="store_true", help="tracemalloc's growth by source line")
    parser.add_argument("--cache", default="memory://leak-check", help="the cache= URL of 'cache'")
    parser.add_argument(
        "--connection", default="sqlite:///leak-check.db", help="the backend URL of 'backend*'"
    )
    args = parser.parse_args(argv)
    every = args.every or max(args.runs // 5, 1)
    measure(args.scenario, scenario(args.scenario, args), args.runs, every, args.warm, args.trace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
