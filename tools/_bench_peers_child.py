"""One measurement of the peer benchmark, run in a fresh interpreter by ``tools/bench_peers.py``.

    python tools/_bench_peers_child.py LIBRARY WORKLOAD N THREADS

The child imports one library (timed: ``import_s``), does any one-time set-up
that is not the workload's (the SQLite schema: ``setup_s``), then times the
workload end to end (``e2e_s``): building the flow or graph, loading/compiling
it and running it, with every first-use cost of the process included (nothing
is warmed up first; Prefect's children use the API server the parent started). It prints one JSON line
with the result the workload computed; the parent checks it.

Every library runs the same plain functions (:func:`step`, :func:`leaf`,
:func:`total`, :func:`dag_node`, :func:`nap`), so what differs is the
machinery around the calls. The workloads:

``linear``
    ``x = step(x)`` N times from 0: the result is N.
``fanout``
    N independent ``leaf(i)`` (= i + 1), then one ``total`` of all of them:
    N(N+1)/2. On THREADS threads when THREADS > 0.
``fanin``
    Same graph as ``fanout`` (used by the compile-cost table only).
``dag``
    The random DAG of ``tools/_bench_workloads.py`` (seed 1000, up to three
    predecessors per node): node i computes ``dag_node(i, *predecessors)``;
    the result is the value of every sink, in order.
``sleep``
    N tasks that sleep 10 ms and return 1, on THREADS threads: the result is N.
``sqlite``
    ``linear`` with every step saved to a fresh SQLite file as it runs.

With LIBRARY ``flowkit-compile``, WORKLOAD names a shape (``linear``,
``fanout``, ``fanin``, ``dag``) and the child times only flowkit's building
and ``engines.load`` (compile + prepare) of that shape: :func:`compile_cost`.
"""

from __future__ import annotations

import gc
import inspect
import json
import os
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_workloads import dag_predecessors

#: Results of the DAG workload are kept small with this modulus.
DAG_MOD = 1_000_003
SLEEP_S = 0.010


# The work. Every library calls exactly these.


def step(x: int) -> int:
    return x + 1


def leaf(i: int) -> int:
    return i + 1


def total(values: Any) -> int:
    return sum(values)


def dag_node(i: int, *preds: int) -> int:
    return (i + sum(preds)) % DAG_MOD


def nap() -> int:
    time.sleep(SLEEP_S)
    return 1


def dag_sinks(preds: list[list[int]]) -> list[int]:
    """Nodes no other node depends on, in order: the DAG workload's outputs."""
    used = {p for ps in preds for p in ps}
    return [i for i in range(len(preds)) if i not in used]


def expected(workload: str, n: int) -> Any:
    """What a correct run of *workload* of size *n* computes (plain Python)."""
    if workload in ("linear", "sqlite"):
        return n
    if workload in ("fanout", "fanin"):
        return n * (n + 1) // 2
    if workload == "sleep":
        return n
    if workload == "dag":
        preds = dag_predecessors(n)
        values: list[int] = []
        for i, ps in enumerate(preds):
            values.append(dag_node(i, *(values[p] for p in ps)))
        return [values[i] for i in dag_sinks(preds)]
    raise ValueError(f"unknown workload {workload!r}")


class Setup:
    """What a library's runner gets: the workload, and a place for files."""

    def __init__(self, workload: str, n: int, threads: int, tmp: Path) -> None:
        self.workload = workload
        self.n = n
        self.threads = threads
        self.tmp = tmp
        # The DAG's shape is the workload's input, drawn before the clock starts.
        self.preds = dag_predecessors(n) if workload == "dag" else []
        self.sinks = dag_sinks(self.preds)


def _import(name: str) -> types.ModuleType:
    """``import name`` for an optional peer; its attributes are typed ``Any``."""
    __import__(name)
    return sys.modules[name]


# --- flowkit and TaskFlow: one implementation, two import roots ---------------------


class _TaskflowLike:
    def __init__(self, root: str) -> None:
        imp = __import__
        self.root = root
        for name in (
            "engines",
            "task",
            "patterns.linear_flow",
            "patterns.graph_flow",
            "patterns.unordered_flow",
        ):
            imp(f"{root}.{name}")
        mod = sys.modules
        self.engines = mod[f"{root}.engines"]
        self.linear_flow = mod[f"{root}.patterns.linear_flow"]
        self.graph_flow = mod[f"{root}.patterns.graph_flow"]
        self.unordered_flow = mod[f"{root}.patterns.unordered_flow"]
        base = mod[f"{root}.task"].Task

        class Step(base):  # type: ignore[misc, valid-type]
            def execute(self, x: int) -> int:
                return step(x)

        class Leaf(base):  # type: ignore[misc, valid-type]
            def __init__(self, i: int, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.i = i

            def execute(self) -> int:
                return leaf(self.i)

        class Total(base):  # type: ignore[misc, valid-type]
            def execute(self, **kwargs: int) -> int:
                return total(kwargs.values())

        class DagNode(base):  # type: ignore[misc, valid-type]
            def __init__(self, i: int, preds: list[int], **kwargs: Any) -> None:
                super().__init__(requires=[f"d{p}" for p in preds], **kwargs)
                self.i = i
                self.preds = preds

            def execute(self, **kwargs: int) -> int:
                return dag_node(self.i, *(kwargs[f"d{p}"] for p in self.preds))

        class Nap(base):  # type: ignore[misc, valid-type]
            def execute(self) -> int:
                return nap()

        self.Step, self.Leaf, self.Total, self.DagNode, self.Nap = Step, Leaf, Total, DagNode, Nap

    def linear(self, n: int) -> Any:
        items = [self.Step(name=f"t{i}", provides=f"x{i + 1}", rebind={"x": f"x{i}"}) for i in range(n)]
        return self.linear_flow.Flow("linear").add(*items)

    def fanout(self, n: int) -> Any:
        leaves = [self.Leaf(i, name=f"t{i}", provides=f"v{i}") for i in range(n)]
        summed = self.Total(name="total", provides="total", requires=[f"v{i}" for i in range(n)])
        return self.graph_flow.Flow("fanout").add(*leaves, summed)

    def dag(self, preds: list[list[int]]) -> Any:
        nodes = [self.DagNode(i, ps, name=f"t{i}", provides=f"d{i}") for i, ps in enumerate(preds)]
        return self.graph_flow.Flow("dag").add(*nodes)

    def sleep(self, n: int) -> Any:
        return self.unordered_flow.Flow("sleep").add(
            *(self.Nap(name=f"t{i}", provides=f"s{i}") for i in range(n))
        )

    def run(self, s: Setup) -> Any:
        options: dict[str, Any] = {}
        if s.threads:
            options = {"engine": "parallel", "max_workers": s.threads}
        store: dict[str, Any] = {}
        if s.workload in ("linear", "sqlite"):
            flow, store = self.linear(s.n), {"x0": 0}
        elif s.workload == "fanout":
            flow = self.fanout(s.n)
        elif s.workload == "dag":
            flow = self.dag(s.preds)
        else:
            flow = self.sleep(s.n)
        if s.workload == "sqlite":
            options.update(backend=self.backend, book=self.models.LogBook("bench"))
        engine = self.engines.load(flow, store=store, **options)
        engine.run()
        fetch = engine.storage.fetch
        if s.workload in ("linear", "sqlite"):
            return fetch(f"x{s.n}")
        if s.workload == "fanout":
            return fetch("total")
        if s.workload == "sleep":
            return sum(fetch(f"s{i}") for i in range(s.n))
        return [fetch(f"d{i}") for i in s.sinks]

    def setup(self, s: Setup) -> None:
        if s.workload != "sqlite":
            return
        backends = __import__(f"{self.root}.persistence.backends", fromlist=["fetch"])
        self.models = __import__(f"{self.root}.persistence.models", fromlist=["LogBook"])
        self.backend = backends.fetch({"connection": f"sqlite:///{s.tmp / 'flows.db'}"})
        conn = self.backend.get_connection()
        conn.upgrade()
        conn.close()


# --- Hamilton: functions whose parameter names are their dependencies ----------------


def _hamilton_fn(name: str, params: list[str], body: Callable[..., Any]) -> Callable[..., Any]:
    """A function Hamilton reads as node *name* depending on *params* (as if written by hand)."""

    def fn(**kwargs: Any) -> Any:
        # Hamilton passes dependencies by name.
        return body(*(kwargs[p] for p in params))

    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = "bench_peers_hamilton"
    fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int) for p in params],
        return_annotation=int,
    )
    fn.__annotations__ = {**dict.fromkeys(params, int), "return": int}
    return fn


class Hamilton:
    def __init__(self) -> None:
        # Imported by name: Hamilton is optional and has no type information, and
        # an import statement would type-check differently with and without it.
        self.driver = _import("hamilton.driver")
        self.h_threadpool = _import("hamilton.plugins.h_threadpool")

    def setup(self, s: Setup) -> None:
        # Hamilton walks the graph recursively: a chain of 1,000 exceeds Python's default limit.
        sys.setrecursionlimit(max(10_000, 4 * s.n + 1_000))

    def run(self, s: Setup) -> Any:
        n = s.n
        fns: list[Callable[..., Any]] = []
        inputs: dict[str, Any] = {}
        if s.workload == "linear":
            inputs = {"x": 0}
            fns = [_hamilton_fn(f"n{i}", ["x" if i == 0 else f"n{i - 1}"], step) for i in range(n)]
            outputs = [f"n{n - 1}"]
        elif s.workload == "fanout":
            fns = [_hamilton_fn(f"v{i}", [], lambda i=i: leaf(i)) for i in range(n)]
            fns.append(_hamilton_fn("total", [f"v{i}" for i in range(n)], lambda *v: total(v)))
            outputs = ["total"]
        elif s.workload == "dag":
            fns = [
                _hamilton_fn(f"d{i}", [f"d{p}" for p in ps], lambda *v, i=i: dag_node(i, *v))
                for i, ps in enumerate(s.preds)
            ]
            outputs = [f"d{i}" for i in s.sinks]
        elif s.workload == "sleep":
            fns = [_hamilton_fn(f"s{i}", [], nap) for i in range(n)]
            outputs = [f"s{i}" for i in range(n)]
        else:
            raise NotApplicable("no durable mode")
        module = types.ModuleType("bench_peers_hamilton")
        for fn in fns:
            setattr(module, fn.__name__, fn)
        sys.modules[module.__name__] = module
        builder = self.driver.Builder().with_modules(module)
        if s.threads:
            builder = builder.with_adapters(self.h_threadpool.FutureAdapter(max_workers=s.threads))
        result = builder.build().execute(outputs, inputs=inputs)
        if s.workload in ("linear", "fanout"):
            return result[outputs[0]]
        if s.workload == "sleep":
            return sum(result[o] for o in outputs)
        return [result[o] for o in outputs]


# --- Dask: a raw task graph, or dask.delayed ------------------------------------------


class DaskGraph:
    def __init__(self) -> None:
        import dask.local
        import dask.threaded

        self.local = dask.local
        self.threaded = dask.threaded

    def setup(self, s: Setup) -> None:
        if s.workload == "sqlite":
            raise NotApplicable("no durable mode")

    def get(self, s: Setup, graph: dict[str, Any], keys: Any) -> Any:
        if s.threads:
            return self.threaded.get(graph, keys, num_workers=s.threads)
        return self.local.get_sync(graph, keys)

    def run(self, s: Setup) -> Any:
        n = s.n
        if s.workload == "linear":
            graph: dict[str, Any] = {"n-1": 0}
            for i in range(n):
                graph[f"n{i}"] = (step, f"n{i - 1}")
            return self.get(s, graph, f"n{n - 1}")
        if s.workload == "fanout":
            graph = {f"v{i}": (leaf, i) for i in range(n)}
            graph["total"] = (total, [f"v{i}" for i in range(n)])
            return self.get(s, graph, "total")
        if s.workload == "dag":
            graph = {f"d{i}": (dag_node, i, *(f"d{p}" for p in ps)) for i, ps in enumerate(s.preds)}
            return list(self.get(s, graph, [f"d{i}" for i in s.sinks]))
        graph = {f"s{i}": (nap,) for i in range(n)}
        return sum(self.get(s, graph, [f"s{i}" for i in range(n)]))


class DaskDelayed:
    def __init__(self) -> None:
        # From the modules that define them: the package re-exports both without
        # ``__all__``, which strict mypy reads as private. Importing dask.base
        # imports the ``dask`` package first, as ``import dask`` does.
        from dask.base import compute
        from dask.delayed import delayed

        # compute has no annotations; what it returns is a tuple, one value per argument.
        self.dask_compute: Callable[..., tuple[Any, ...]] = compute
        self.delayed = delayed

    def setup(self, s: Setup) -> None:
        sys.setrecursionlimit(max(10_000, 4 * s.n + 1_000))
        if s.workload == "sqlite":
            raise NotApplicable("no durable mode")

    def compute(self, s: Setup, *values: Any) -> Any:
        if s.threads:
            return self.dask_compute(*values, scheduler="threads", num_workers=s.threads)
        return self.dask_compute(*values, scheduler="sync")

    def run(self, s: Setup) -> Any:
        delayed = self.delayed
        n = s.n
        if s.workload == "linear":
            x: Any = 0
            d_step = delayed(step)
            for _ in range(n):
                x = d_step(x)
            return self.compute(s, x)[0]
        if s.workload == "fanout":
            d_leaf = delayed(leaf)
            return self.compute(s, delayed(total)([d_leaf(i) for i in range(n)]))[0]
        if s.workload == "dag":
            d_node = delayed(dag_node)
            nodes: list[Any] = []
            for i, ps in enumerate(s.preds):
                nodes.append(d_node(i, *(nodes[p] for p in ps)))
            return list(self.compute(s, *(nodes[i] for i in s.sinks)))
        d_nap = delayed(nap, pure=False)
        return sum(self.compute(s, *(d_nap() for _ in range(n))))


# --- Prefect: tasks run inside a flow, against the API server the parent started -----


class Prefect:
    def __init__(self) -> None:
        # Imported by name: Prefect is optional, and an import statement would
        # type-check differently with and without it (it ships its own types).
        prefect = _import("prefect")
        self.flow, self.task = prefect.flow, prefect.task
        self.ThreadPoolTaskRunner = _import("prefect.task_runners").ThreadPoolTaskRunner

    def setup(self, s: Setup) -> None:
        if s.workload == "sqlite":
            raise NotApplicable("no durable mode of the same kind")
        # Without a server to use, the first flow run would start a temporary one (~25 s)
        # inside the timed run: tools/bench_peers.py starts one for all runs instead.
        if not os.environ.get("PREFECT_API_URL"):
            raise RuntimeError("PREFECT_API_URL is not set: run Prefect through tools/bench_peers.py")

    def run(self, s: Setup) -> Any:
        n = s.n
        t_step, t_leaf, t_total = self.task(step), self.task(leaf), self.task(total)
        t_node, t_nap = self.task(dag_node), self.task(nap)
        runner = self.ThreadPoolTaskRunner(max_workers=s.threads or 1)

        def body() -> Any:
            if s.workload == "linear":
                x = 0
                for _ in range(n):
                    x = t_step(x)
                return x
            if s.workload == "fanout":
                if s.threads:
                    futures = [t_leaf.submit(i) for i in range(n)]
                    return t_total.submit(futures).result()
                return t_total([t_leaf(i) for i in range(n)])
            if s.workload == "dag":
                values: list[int] = []
                for i, ps in enumerate(s.preds):
                    values.append(t_node(i, *(values[p] for p in ps)))
                return [values[i] for i in s.sinks]
            futures = [t_nap.submit() for _ in range(n)]
            return sum(f.result() for f in futures)

        return self.flow(name=f"bench-{s.workload}", task_runner=runner)(body)()


# --- The floors: no library at all --------------------------------------------------


class FloorLoop:
    """Plain Python in a loop (serial workloads; a commit per step for ``sqlite``)."""

    def setup(self, s: Setup) -> None:
        if s.threads:
            raise NotApplicable("a loop has no threads")

    def run(self, s: Setup) -> Any:
        n = s.n
        if s.workload == "linear":
            x = 0
            for _ in range(n):
                x = step(x)
            return x
        if s.workload == "fanout":
            return total([leaf(i) for i in range(n)])
        if s.workload == "dag":
            values: list[int] = []
            for i, ps in enumerate(s.preds):
                values.append(dag_node(i, *(values[p] for p in ps)))
            return [values[i] for i in s.sinks]
        if s.workload == "sleep":
            return sum(nap() for _ in range(n))
        import sqlite3

        db = sqlite3.connect(s.tmp / "floor.db")
        # flowkit's SQLite defaults: write-ahead log, synchronous=NORMAL.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE steps (i INTEGER PRIMARY KEY, x INTEGER)")
        x = 0
        for i in range(n):
            x = step(x)
            with db:  # one durable transaction per step, as the libraries do
                db.execute("INSERT INTO steps VALUES (?, ?)", (i, x))
        db.close()
        return x


class FloorGraphlibPool:
    """graphlib.TopologicalSorter handing ready nodes to a ThreadPoolExecutor."""

    def setup(self, s: Setup) -> None:
        if s.workload == "sqlite":
            raise NotApplicable("no durable mode")

    def run(self, s: Setup) -> Any:
        import graphlib
        from concurrent import futures

        n = s.n
        deps: dict[int, list[int]] = {}
        if s.workload == "linear":
            for i in range(n):
                deps[i] = [i - 1] if i else []
            outputs = [n - 1]
        elif s.workload == "fanout":
            for i in range(n):
                deps[i] = []
            deps[n] = list(range(n))
            outputs = [n]
        elif s.workload == "dag":
            deps = dict(enumerate(s.preds))
            outputs = s.sinks
        else:
            deps = {i: [] for i in range(n)}
            outputs = list(range(n))
        results: dict[int, Any] = {}

        def call(i: int) -> Any:
            args = [results[p] for p in deps[i]]
            if s.workload == "linear":
                return step(args[0] if args else 0)
            if s.workload == "fanout":
                return total(args) if i == n else leaf(i)
            if s.workload == "dag":
                return dag_node(i, *args)
            return nap()

        sorter = graphlib.TopologicalSorter(deps)
        sorter.prepare()
        with futures.ThreadPoolExecutor(max(1, s.threads)) as pool:
            running: dict[futures.Future[Any], int] = {}
            while sorter.is_active():
                for node in sorter.get_ready():
                    running[pool.submit(call, node)] = node
                done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    node = running.pop(future)
                    results[node] = future.result()
                    sorter.done(node)
        if s.workload in ("linear", "fanout"):
            return results[outputs[0]]
        if s.workload == "sleep":
            return sum(results.values())
        return [results[o] for o in outputs]


class NotApplicable(Exception):
    """This library has no way to run this workload (shown as such, not as a failure)."""


LIBRARIES: dict[str, Callable[[], Any]] = {
    "flowkit": lambda: _TaskflowLike("flowkit"),
    "taskflow": lambda: _TaskflowLike("taskflow"),
    "hamilton": Hamilton,
    "dask-graph": DaskGraph,
    "dask-delayed": DaskDelayed,
    "prefect": Prefect,
    "floor-loop": FloorLoop,
    "floor-graphlib-pool": FloorGraphlibPool,
}


def compile_cost(shape: str, n: int) -> dict[str, Any]:
    """flowkit only: seconds to build one flow, to ``compile()`` it and to ``prepare()`` its storage.

    A one-task flow is loaded and run first, untimed, so that the engine's
    modules imported on first use are not counted as compiling.
    """
    from flowkit import engines, task
    from flowkit.patterns import graph_flow, linear_flow

    class Node(task.Task):
        def execute(self, **kwargs: Any) -> int:
            return 1

    engines.load(linear_flow.Flow("warm-up").add(Node(name="warm-up"))).run()
    started = time.perf_counter()
    if shape == "linear":
        items = [Node(name=f"t{i}", provides=f"x{i + 1}", requires=[f"x{i}"]) for i in range(n)]
        flow: Any = linear_flow.Flow("linear").add(*items)
    elif shape == "fanout":
        # One source that every other node reads.
        items = [Node(name="src", provides="x0")]
        items += [Node(name=f"t{i}", provides=f"v{i}", requires=["x0"]) for i in range(1, n)]
        flow = graph_flow.Flow("fanout").add(*items)
    elif shape == "fanin":
        # Every node but the last feeds the last.
        items = [Node(name=f"t{i}", provides=f"v{i}") for i in range(n - 1)]
        items.append(Node(name="sink", requires=[f"v{i}" for i in range(n - 1)]))
        flow = graph_flow.Flow("fanin").add(*items)
    else:
        preds = dag_predecessors(n)
        items = [
            Node(name=f"t{i}", provides=f"d{i}", requires=[f"d{p}" for p in ps]) for i, ps in enumerate(preds)
        ]
        flow = graph_flow.Flow("dag").add(*items)
    built = time.perf_counter()
    engine = engines.load(flow, store={"x0": 0} if shape == "linear" else {})
    loaded = time.perf_counter()
    engine.compile()
    compiled = time.perf_counter()
    engine.prepare()
    prepared = time.perf_counter()
    return {
        "ok": True,
        "build_s": built - started,
        "load_s": loaded - built,
        "compile_s": compiled - loaded,
        "prepare_s": prepared - compiled,
    }


def main(argv: list[str]) -> int:
    library, workload, n, threads = argv[0], argv[1], int(argv[2]), int(argv[3])
    # A folder of its own for the SQLite files (and Prefect's home, so no
    # cross-run state), removed afterwards: a peer run starts hundreds of children.
    with tempfile.TemporaryDirectory(prefix="bench-peers-", ignore_cleanup_errors=True) as folder:
        _measure(library, workload, n, threads, Path(folder))
    return 0


def _measure(library: str, workload: str, n: int, threads: int, tmp: Path) -> None:
    """Print the one JSON line of a measurement (or of why there is none)."""
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    stage = "start"
    try:
        if library == "flowkit-compile":
            print(json.dumps(compile_cost(workload, n)))
            return
        s = Setup(workload, n, threads, tmp)
        stage = "import"
        started = time.perf_counter()
        try:
            runner = LIBRARIES[library]()
        except ImportError as exc:
            print(json.dumps({"ok": False, "missing": True, "error": str(exc)}))
            return
        imported = time.perf_counter()
        stage = "setup"
        runner.setup(s)
        ready = time.perf_counter()
        stage = "run"
        gc.collect()
        begin = time.perf_counter()
        value = runner.run(s)
        e2e = time.perf_counter() - begin
        print(
            json.dumps(
                {
                    "ok": True,
                    "import_s": imported - started,
                    "setup_s": ready - imported,
                    "e2e_s": e2e,
                    "value": value,
                }
            )
        )
    except NotApplicable as exc:
        print(json.dumps({"ok": False, "not_applicable": True, "error": str(exc)}))
    except BaseException as exc:
        traceback.print_exc()
        print(json.dumps({"ok": False, "stage": stage, "error": f"{type(exc).__name__}: {exc}"[:500]}))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
