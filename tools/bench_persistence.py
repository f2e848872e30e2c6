#!/usr/bin/env python3
"""Measure persisted runs: a linear flow saved to SQLite and PostgreSQL, flowkit vs TaskFlow.

Usage (from anywhere; the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_persistence.py                     # 1000 tasks, 3 repeats, TaskFlow if importable
    python tools/bench_persistence.py --no-taskflow --repeat 5
    python tools/bench_persistence.py --postgresql postgresql+psycopg://user@host/db
    python tools/bench_persistence.py --loop 200 800 3200 --repeat 5   # durable loops on SQLite
    python tools/bench_persistence.py --read 10000 --repeat 5          # reading a big logbook back

Each figure is load + run of an N-task linear flow whose every task adds one to
the previous result, with the run saved through the backend as it goes (a fresh
database file, or a fresh PostgreSQL database, per repeat), compared with the
same flow kept in memory. Without ``--postgresql`` a throw-away PostgreSQL
server is started (the test suite's fixture code); if none is installed, the
PostgreSQL rows say why they are missing. The best of ``--repeat`` runs is kept.

``--loop N...`` measures something else: a loop flow (two body tasks and
``until``) run for N iterations, saved to a fresh SQLite file, with the time
per iteration; a cost per iteration that grows with N means each iteration
writes more than the last. The median of ``--repeat`` runs is kept (the
machine is shared, so single runs are noisy).

``--read N`` measures reading back: one logbook whose flow detail has N
finished task details (each with a result and metadata), read whole with
``get_logbook``, and N logbooks listed with ``get_logbooks``, from SQLite and
from a directory backend, saved once and read ``--repeat`` times (the best is
kept: nothing but the reading is timed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SQLITE_S = 0.5


def _linear(root: str, n: int) -> Any:
    """An n-task linear flow of ``root`` (flowkit or taskflow), each task adding one."""
    task = importlib.import_module(f"{root}.task")
    linear_flow = importlib.import_module(f"{root}.patterns.linear_flow")

    class Add(task.Task):  # type: ignore[misc, name-defined]
        def execute(self, x: int) -> int:
            return x + 1

    flow = linear_flow.Flow("bench")
    for i in range(n):
        flow.add(Add(f"t{i}", rebind={"x": "x" if i == 0 else f"t{i - 1}"}, provides=f"t{i}"))
    return flow


def _run(root: str, n: int, url: str | None) -> float:
    """Seconds to load and run an n-task linear flow saved at ``url`` (None: in memory)."""
    engines = importlib.import_module(f"{root}.engines")
    backends = importlib.import_module(f"{root}.persistence.backends")
    models = importlib.import_module(f"{root}.persistence.models")
    flow = _linear(root, n)
    backend = None
    kwargs: dict[str, Any] = {}
    if url is not None:
        backend = backends.fetch({"connection": url})
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        kwargs = {"backend": backend, "book": models.LogBook("bench")}
    started = time.perf_counter()
    engine = engines.load(flow, store={"x": 0}, **kwargs)
    engine.run()
    elapsed = time.perf_counter() - started
    assert engine.storage.fetch(f"t{n - 1}") == n
    if backend is not None:
        with contextlib.closing(backend.get_connection()) as conn:
            (stored,) = list(conn.get_logbooks())
            (flow_detail,) = list(stored)
            assert all(ad.state == "SUCCESS" for ad in flow_detail), "not every atom was saved as SUCCESS"
        backend.close()
    return elapsed


def _loop_run(iterations: int, url: str) -> float:
    """Seconds to load and run a loop of ``iterations`` iterations saved at ``url``."""
    from flowkit import engines, task
    from flowkit.patterns import linear_flow, loop_flow
    from flowkit.persistence import backends, models

    class Count(task.Task):
        default_provides = "n"
        done = 0  # iterations run (a body task's own result is reset between iterations)

        def execute(self) -> int:
            Count.done += 1
            return Count.done

    class Label(task.Task):
        default_provides = "label"

        def execute(self, n: int) -> str:
            return f"iteration {n}"

    loop = loop_flow.Flow(
        "count",
        Count("count"),
        Label("label"),
        until=lambda n: n >= iterations,
        max_iterations=iterations,
    )
    backend = backends.fetch({"connection": url})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    started = time.perf_counter()
    engine = engines.load(linear_flow.Flow("bench").add(loop), backend=backend,
                          book=models.LogBook("bench"))  # fmt: skip
    engine.run()
    elapsed = time.perf_counter() - started
    assert engine.storage.fetch("label") == f"iteration {iterations}"
    backend.close()
    return elapsed


def _loops(counts: list[int], repeat: int) -> int:
    """Print the median time per loop iteration on SQLite for each count in ``counts``."""
    import statistics

    print(f"durable loop on SQLite (2 body tasks + until; load + run, median of {repeat})")
    print(f"{'iterations':>10}{'total':>12}{'per iteration':>16}   runs (s)")
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-") as folder:
        tmp = Path(folder)
        for n in counts:
            runs = [_loop_run(n, f"sqlite:///{tmp / (uuid.uuid4().hex + '.db')}") for _ in range(repeat)]
            median = statistics.median(runs)
            listed = " ".join(f"{r:.2f}" for r in runs)
            print(f"{n:>10}{median:>11.2f}s{median / n * 1e3:>14.2f}ms   {listed}")
    return 0


def _read_rows(n: int, repeat: int, tmp: Path) -> list[tuple[str, float]]:
    """The best time of each read of a big logbook and of many logbooks, per backend."""
    from _best_time import best

    from flowkit.persistence import backends, models

    big = models.LogBook("big")
    flow_detail = models.FlowDetail("flow", uuid.uuid4().hex)
    big.add(flow_detail)
    for i in range(n):
        atom = models.TaskDetail(f"t{i}", uuid.uuid4().hex)
        atom.put("SUCCESS", {"value": i, "label": f"result {i}"})
        atom.meta = {"progress": 1.0}
        flow_detail.add(atom)
    books = [models.LogBook(f"book {i}") for i in range(n)]
    rows: list[tuple[str, float]] = []
    for label, url in (("SQLite", f"sqlite:///{tmp / 'read.db'}"), ("directory", f"dir://{tmp / 'read'}")):
        backend = backends.fetch({"connection": url})
        try:
            with contextlib.closing(backend.get_connection()) as conn:
                conn.upgrade()
                conn.save_logbook(big)
                for book in books:
                    conn.save_logbook(book)
                read = conn.get_logbook(big.uuid)
                assert sum(len(fd) for fd in read) == n, "the big logbook did not read back whole"
                rows.append(
                    (f"{label}, 1 book of {n} atoms", best(lambda: conn.get_logbook(big.uuid), repeat))
                )
                rows.append((f"{label}, {n + 1} books", best(lambda: list(conn.get_logbooks()), repeat)))
        finally:
            backend.close()
    return rows


def _reads(n: int, repeat: int) -> int:
    """Print the best time of reading a big logbook, and many logbooks, back."""
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-") as folder:
        rows = _read_rows(n, repeat, Path(folder))
    print(f"reading back (best of {repeat})")
    print(f"{'':34}{'total':>12}{'per record':>12}")
    for name, value in rows:
        print(f"{name:34}{value * 1e3:>10.1f}ms{value / n * 1e6:>10.2f}us")
    return 0


@contextlib.contextmanager
def _postgresql(url: str | None) -> Iterator[tuple[Callable[[], str] | None, str]]:
    """Yield a maker of fresh-database URLs (or None and the reason there is none)."""
    if url is not None:
        yield (lambda: url), ""
        return
    try:
        from tests.services import PostgresServer

        server = PostgresServer()
        server.start()
    except BaseException as err:  # pytest.skip raises a BaseException
        yield None, f"no PostgreSQL server: {err}"
        return
    try:
        import psycopg

        def fresh() -> str:
            name = f"bench_{uuid.uuid4().hex[:12]}"
            base = server.url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return server.url.rsplit("/", 1)[0] + f"/{name}"

        yield fresh, ""
    finally:
        server.stop()


def _best(repeat: int, measure: Callable[[], float]) -> tuple[float | None, str]:
    try:
        return min(measure() for _ in range(repeat)), ""
    except Exception as err:  # report and carry on with the other rows
        return None, f"{type(err).__name__}: {err}"


def _persisted_rows(
    args: argparse.Namespace, n: int, with_taskflow: bool, tmp: Path
) -> list[tuple[str, float | None, str]]:
    """Each configuration's best time (or None and why), its files under ``tmp``."""
    rows: list[tuple[str, float | None, str]] = []

    def sqlite_url() -> str:
        return f"sqlite:///{tmp / (uuid.uuid4().hex + '.db')}"

    rows.append(("flowkit, in memory", *_best(args.repeat, lambda: _run("flowkit", n, None))))
    rows.append(("flowkit, SQLite", *_best(args.repeat, lambda: _run("flowkit", n, sqlite_url()))))
    with _postgresql(args.postgresql) as (fresh_pg, why):
        if fresh_pg is None:
            rows.append(("flowkit, PostgreSQL", None, why))
        else:
            rows.append(("flowkit, PostgreSQL", *_best(args.repeat, lambda: _run("flowkit", n, fresh_pg()))))
        if with_taskflow:
            tf_repeat = args.taskflow_repeat
            rows.append(("TaskFlow, SQLite", *_best(tf_repeat, lambda: _run("taskflow", n, sqlite_url()))))
            if fresh_pg is not None:
                rows.append(
                    ("TaskFlow, PostgreSQL", *_best(tf_repeat, lambda: _run("taskflow", n, fresh_pg())))
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--tasks", type=int, default=1000, help="tasks in the linear flow (1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept (3)")
    parser.add_argument("--no-taskflow", action="store_true", help="skip TaskFlow")
    parser.add_argument(
        "--taskflow-repeat", type=int, default=1, help="runs per TaskFlow figure (1; it is slow)"
    )
    parser.add_argument("--postgresql", help="a PostgreSQL URL to use instead of starting a server")
    parser.add_argument(
        "--loop", type=int, nargs="+", metavar="N", help="measure durable loops of N iterations instead"
    )
    parser.add_argument(
        "--read", type=int, metavar="N", help="measure reading a logbook of N atoms (and N logbooks) instead"
    )
    args = parser.parse_args(argv)
    if args.read:
        return _reads(args.read, args.repeat)
    if args.loop:
        return _loops(args.loop, args.repeat)
    n = args.tasks
    with_taskflow = not args.no_taskflow and importlib.util.find_spec("taskflow") is not None

    with tempfile.TemporaryDirectory(prefix="flowkit-bench-") as folder:
        rows = _persisted_rows(args, n, with_taskflow, Path(folder))

    figures = {name: value for name, value, _ in rows}
    print(f"persisted linear flow of {n} tasks (load + run, best of {args.repeat}; TaskFlow best of "
          f"{args.taskflow_repeat})")  # fmt: skip
    print(f"{'':24}{'total':>12}{'per task':>12}   notes")
    for name, value, note in rows:
        if value is None:
            print(f"{name:24}{'n/a':>12}{'':>12}   {note}")
        else:
            print(f"{name:24}{value * 1e3:>10.1f}ms{value / n * 1e6:>10.1f}us   {note}")
    fk_sqlite = figures.get("flowkit, SQLite")
    for label, other in (("SQLite", "TaskFlow, SQLite"), ("PostgreSQL", "TaskFlow, PostgreSQL")):
        fk, tf = figures.get(f"flowkit, {label}"), figures.get(other)
        if fk and tf:
            print(f"TaskFlow / flowkit on {label}: {tf / fk:.0f}x")
    memory = figures.get("flowkit, in memory")
    if fk_sqlite and memory:
        print(f"flowkit SQLite / in memory: {fk_sqlite / memory:.1f}x")
    if fk_sqlite is not None and n == 1000:
        verdict = "PASS" if fk_sqlite < TARGET_SQLITE_S else "FAIL"
        print(f"target: SQLite 1000 tasks < {TARGET_SQLITE_S} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
