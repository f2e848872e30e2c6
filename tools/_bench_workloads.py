"""Benchmark workloads shared by flowkit and TaskFlow, run one per child process.

``tools/bench.py`` never times anything itself (except interpreter start-up for the
import benchmark): it starts a fresh interpreter per measurement and that child runs
:func:`child_main`. A fresh process per repeat keeps the memory high-water mark, the
garbage collector's generations and the import cache of one measurement out of the
next one.

Both libraries build their flows from the definitions below. The task classes are
made per library by :func:`load_library` from the library's own ``task.Task``, and
every task body calls the same module-level function (:func:`step`, :func:`noop`,
:func:`nap`, :func:`undo`) that the floors call directly, so the only thing that
differs between the three columns of a result row is the machinery around the call.

The child prints exactly one JSON object on its last line of standard output:
``{"ok": true, "build_s": ..., "load_s": ..., "run_s": ..., "maxrss_kb": ...}`` (the peak
resident set, ``VmHWM``: see ``_peak_memory.py``) or
``{"ok": false, "stage": ..., "error": ...}`` where ``stage`` says how far it got
(``import``, ``build``, ``load``, ``run`` or ``check``).
"""

from __future__ import annotations

import functools
import graphlib
import importlib
import json
import random
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

from _peak_memory import peak_rss_kb

__all__ = [
    "DAG_SEED",
    "SLEEP_S",
    "BenchFailure",
    "Library",
    "build_dag",
    "build_linear",
    "build_unordered",
    "child_main",
    "dag_predecessors",
    "load_library",
    "measure",
    "nap",
    "noop",
    "step",
    "undo",
]

#: How long each task of the sleep workload sleeps.
SLEEP_S = 0.010
#: Seed of the random DAG, fixed so every run and both libraries get the same graph.
DAG_SEED = 1000
#: Most predecessors one DAG node links from.
DAG_MAX_PREDS = 3


class BenchFailure(Exception):
    """Raised on purpose by the last task of the revert workload."""


# The work itself. Task bodies and floors call exactly these.


def step(x: int) -> int:
    """Return the next link of a chain; the linear workloads pass it along."""
    return x + 1


def noop() -> None:
    """Do nothing, so that what is measured is the machinery around the call."""


def nap() -> None:
    """Sleep for :data:`SLEEP_S`, releasing the GIL like real I/O would."""
    time.sleep(SLEEP_S)


def undo(x: int) -> None:
    """Stand in for undoing one :func:`step`; trivial on purpose."""
    del x


@dataclass(frozen=True)
class Library:
    """The modules of one library under test plus its benchmark task classes."""

    root: str
    engines: ModuleType
    linear_flow: ModuleType
    unordered_flow: ModuleType
    graph_flow: ModuleType
    states: ModuleType
    tasks: SimpleNamespace


def _define_tasks(base: Any) -> SimpleNamespace:
    """Subclass ``base`` (a library's ``task.Task``) into the benchmark's tasks."""

    class Step(base):  # type: ignore[misc]
        def execute(self, x: int) -> int:
            return step(x)

        def revert(self, x: int, **kwargs: Any) -> None:
            undo(x)

    class Noop(base):  # type: ignore[misc]
        def execute(self) -> None:
            noop()

    class Nap(base):  # type: ignore[misc]
        def execute(self) -> None:
            nap()

    class Boom(base):  # type: ignore[misc]
        def execute(self, x: int) -> None:
            raise BenchFailure(f"the benchmark fails on purpose after {x} steps")

    return SimpleNamespace(Step=Step, Noop=Noop, Nap=Nap, Boom=Boom)


@functools.cache
def load_library(root: str) -> Library:
    """Import the public modules of ``root`` ("flowkit" or "taskflow")."""
    imp = importlib.import_module
    return Library(
        root=root,
        engines=imp(root + ".engines"),
        linear_flow=imp(root + ".patterns.linear_flow"),
        unordered_flow=imp(root + ".patterns.unordered_flow"),
        graph_flow=imp(root + ".patterns.graph_flow"),
        states=imp(root + ".states"),
        tasks=_define_tasks(imp(root + ".task").Task),
    )


# Flow builders. Each returns the flow and the store to load it with.


def build_linear(lib: Library, n: int, *, fail: bool = False) -> tuple[Any, dict[str, int]]:
    """Chain ``n`` steps: task ``i`` reads ``x{i}`` and provides ``x{i+1}``.

    With ``fail`` a last task reads ``x{n}`` and raises, so every step is reverted.
    """
    tasks = lib.tasks
    items = [tasks.Step(name=f"t{i}", provides=f"x{i + 1}", rebind={"x": f"x{i}"}) for i in range(n)]
    if fail:
        items.append(tasks.Boom(name="boom", rebind={"x": f"x{n}"}))
    return lib.linear_flow.Flow(f"linear-{n}").add(*items), {"x0": 0}


def build_unordered(lib: Library, n: int, task_cls: Any) -> tuple[Any, dict[str, int]]:
    """Put ``n`` independent tasks of ``task_cls`` in one unordered flow."""
    items = [task_cls(name=f"t{i}") for i in range(n)]
    return lib.unordered_flow.Flow(f"unordered-{n}").add(*items), {}


def dag_predecessors(n: int, seed: int = DAG_SEED) -> list[list[int]]:
    """Draw the random DAG: node ``i`` depends on up to three earlier nodes."""
    rng = random.Random(seed)
    preds = []
    for i in range(n):
        count = rng.randint(0, min(DAG_MAX_PREDS, i))
        preds.append(sorted(rng.sample(range(i), count)))
    return preds


def build_dag(lib: Library, n: int) -> tuple[Any, dict[str, int]]:
    """Build the random DAG as a graph flow of no-op tasks with explicit links."""
    items = [lib.tasks.Noop(name=f"t{i}") for i in range(n)]
    flow = lib.graph_flow.Flow(f"dag-{n}").add(*items)
    for i, preds in enumerate(dag_predecessors(n)):
        for p in preds:
            flow.link(items[p], items[i])
    return flow, {}


# Floors: the same functions without any flow machinery.


def _warm_pool(workers: int) -> futures.ThreadPoolExecutor:
    """Start a pool with all of its threads already running.

    The floors time only the dispatch of work, never thread start-up, so they are the
    strictest comparison an engine can face (whether or not it keeps a warm pool).
    """
    pool = futures.ThreadPoolExecutor(workers)
    barrier = threading.Barrier(workers)
    # Each task holds its thread until all are busy, so every thread gets started.
    futures.wait([pool.submit(barrier.wait) for _ in range(workers)])
    return pool


def _floor_pool(fn: Any, n: int, pool: futures.Executor) -> None:
    futures.wait([pool.submit(fn) for _ in range(n)])


def _floor_dag_pool(n: int, pool: futures.Executor) -> None:
    # graphlib plus a thread pool is the least a DAG scheduler can be.
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for i, preds in enumerate(dag_predecessors(n)):
        sorter.add(i, *preds)
    sorter.prepare()
    running: dict[futures.Future[None], int] = {}
    while sorter.is_active():
        for node in sorter.get_ready():
            running[pool.submit(noop)] = node
        done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
        for fut in done:
            fut.result()
            sorter.done(running.pop(fut))


def _floor_loop(fn: Callable[[], None], n: int) -> None:
    for _ in range(n):
        fn()


def _floor_chain(n: int, *, back: bool = False) -> None:
    x = 0
    for _ in range(n):
        x = step(x)
    if x != n:
        raise AssertionError(f"floor chain ended at {x}, expected {n}")
    if back:
        for i in range(n - 1, -1, -1):
            undo(i)


def _run_floor(kind: str, n: int, workers: int) -> float:
    """Run the floor of ``kind`` and return its wall time in seconds."""
    pool: futures.ThreadPoolExecutor | None = None
    body: Callable[[], object]
    if kind in ("parallel", "sleep", "dag-parallel"):
        warm = pool = _warm_pool(workers)
        body = {
            "parallel": lambda: _floor_pool(noop, n, warm),
            "sleep": lambda: _floor_pool(nap, n, warm),
            "dag-parallel": lambda: _floor_dag_pool(n, warm),
        }[kind]
    else:
        body = {
            "linear": lambda: _floor_chain(n),
            "revert": lambda: _floor_chain(n, back=True),
            "dag-serial": lambda: _floor_loop(noop, n),
            "call": lambda: _floor_chain(n),
            "baseline": lambda: None,
        }[kind]
    try:
        start = time.perf_counter()
        body()
        return time.perf_counter() - start
    finally:
        if pool is not None:
            pool.shutdown()


# Measuring one library run.


def _build(lib: Library, kind: str, n: int) -> tuple[Any, dict[str, int]]:
    if kind == "linear":
        return build_linear(lib, n)
    if kind == "revert":
        return build_linear(lib, n, fail=True)
    if kind == "parallel":
        return build_unordered(lib, n, lib.tasks.Noop)
    if kind == "sleep":
        return build_unordered(lib, n, lib.tasks.Nap)
    if kind in ("dag-serial", "dag-parallel"):
        return build_dag(lib, n)
    raise ValueError(f"unknown workload kind {kind!r}")


def _engine_options(kind: str, workers: int) -> dict[str, Any]:
    if kind in ("parallel", "sleep", "dag-parallel"):
        return {"engine": "parallel", "max_workers": workers}
    return {"engine": "serial"}


def _check(lib: Library, kind: str, n: int, engine: Any, raised: BaseException | None) -> None:
    """Make sure the run did the work, so a broken engine cannot look fast."""
    storage = engine.storage
    if kind == "revert":
        if raised is None:
            raise AssertionError("the failing flow did not raise")
        expected = lib.states.REVERTED
    else:
        expected = lib.states.SUCCESS
    state = storage.get_flow_state()
    if state != expected:
        raise AssertionError(f"flow ended in state {state}, expected {expected}")
    if kind == "linear":
        last = storage.fetch(f"x{n}")
        if last != n:
            raise AssertionError(f"chain ended at {last!r}, expected {n}")


def _run_once(lib: Library, kind: str, n: int, workers: int, stage: list[str]) -> dict[str, Any]:
    """Build, load, run and check one flow, noting in ``stage[0]`` how far it got."""
    stage[0] = "build"
    t0 = time.perf_counter()
    flow, store = _build(lib, kind, n)
    stage[0] = "load"
    t1 = time.perf_counter()
    engine = lib.engines.load(flow, store=store, **_engine_options(kind, workers))
    stage[0] = "run"
    t2 = time.perf_counter()
    raised: BaseException | None = None
    try:
        engine.run()
    except BenchFailure as exc:
        raised = exc
    except Exception as exc:
        # A library may wrap the task's exception; accept it only if it says so.
        if kind != "revert" or "BenchFailure" not in repr(exc) + str(exc):
            raise
        raised = exc
    t3 = time.perf_counter()
    stage[0] = "check"
    _check(lib, kind, n, engine, raised)
    return {"build_s": t1 - t0, "load_s": t2 - t1, "run_s": t3 - t2}


def measure(lib_name: str, kind: str, n: int, workers: int = 1) -> dict[str, Any]:
    """Warm up, then build, load and run one workload once; return timings or the failure.

    The warm-up runs a one-task flow of the same kind on the same engine, so one-time
    costs (plugin discovery, lazy imports, first thread pool) are reported on their
    own as ``warmup_s`` instead of being spread over the measured workload. A
    two-task flow then runs untimed: what only a flow with an edge between tasks
    loads (flowkit's type check of annotated arguments, ``flowkit.typed``) is a
    one-time cost too, which the one-task warm-up never reaches.
    """
    stage = ["import"]
    try:
        if lib_name == "floor":
            run_s = _run_floor(kind, n, workers)
            return {"ok": True, "build_s": 0.0, "load_s": 0.0, "run_s": run_s, "maxrss_kb": peak_rss_kb()}
        lib = load_library(lib_name)
        import_kb = peak_rss_kb()
        start = time.perf_counter()
        _run_once(lib, kind, 1, workers, stage)
        warmup_s = time.perf_counter() - start
        _run_once(lib, kind, 2, workers, stage)
        result = _run_once(lib, kind, n, workers, stage)
        return {
            "ok": True,
            **result,
            "warmup_s": warmup_s,
            "maxrss_kb": peak_rss_kb(),
            "import_maxrss_kb": import_kb,
        }
    except Exception as exc:
        # Where it broke helps the lead; for a missing module the name says it all.
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" at {last[0].filename}:{last[0].lineno}" if last and stage[0] != "import" else ""
        return {"ok": False, "stage": stage[0], "error": f"{type(exc).__name__}: {exc}{where}"}


def _limit_memory(limit_mb: int) -> None:
    """Cap the address space so a runaway workload fails here, not in the OOM killer.

    TaskFlow needs tens of GB for a 100,000-task linear flow; without a cap such a run
    takes the whole machine (and whatever else runs on it) down with it.
    """
    if limit_mb > 0:
        limit = limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def child_main(argv: list[str]) -> int:
    """Entry point of a child: ``LIB KIND N [WORKERS [LIMIT_MB]]``; prints one JSON line."""
    lib_name, kind, n = argv[0], argv[1], int(argv[2])
    workers = int(argv[3]) if len(argv) > 3 else 1
    limit_mb = int(argv[4]) if len(argv) > 4 else 0
    _limit_memory(limit_mb)
    result = measure(lib_name, kind, n, workers)
    if not result["ok"] and result["error"].startswith("MemoryError"):
        result["error"] += f" (address space capped at {limit_mb} MB, see --memory-limit)"
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
