#!/usr/bin/env python3
"""What each atom of a durable run costs on the SQL backend: statements, round trips, bytes, CPU.

Usage (from anywhere; the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_durable_cost.py                    # SQLite (synchronous normal and full)
    python tools/bench_durable_cost.py --postgresql       # and a throw-away PostgreSQL server
    python tools/bench_durable_cost.py --profile          # CPU by phase (cProfile), SQLite normal
    python tools/bench_durable_cost.py --fenced           # and a conductor's fenced writes, per write
    python tools/bench_durable_cost.py --nested           # each result an 8.5 KB nested dict
    strace -f -c -e trace=fsync,fdatasync,pwrite64 python tools/bench_durable_cost.py --only sqlite

Each figure is per atom of an N-task linear flow (``-n``, 1,000) whose tasks
add one (with ``--nested``, each returns its count beside a dict of 300
short lists, 8.5 KB of JSON, so every result goes through the JSON encoder
as real results do), loaded and run against a fresh database, after one warm-up run in the
same process (so imports and first-use compilation are not counted). Counted
where the database sees them, below SQLAlchemy: SQLite's statement trace
(every statement, ``BEGIN`` and ``COMMIT`` included), libpq's protocol trace
for PostgreSQL (a round trip is one ``ReadyForQuery``), and the bytes and
write calls of this process (``/proc/self/io``: SQLite's WAL writes; on
PostgreSQL the server writes, not this process). CPU is ``time.process_time``
of this process; wall is the minimum of ``--repeat`` runs, since the machine
may be shared. The PostgreSQL server is the test suite's (``fsync=off``,
``synchronous_commit=off``): its figures are round trips and client CPU, not
disk cost.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


#: The ``--nested`` result's payload: a dict of 300 short lists, 8.5 KB as JSON.
NESTED = {f"key-{i:03d}": [i, i * 7, "abcde"] for i in range(300)}


def _flow(n: int, nested: bool = False) -> Any:
    from flowkit import task
    from flowkit.patterns import linear_flow

    class Add(task.Task):
        def execute(self, x: int) -> int:
            return x + 1

    class AddNested(task.Task):
        def execute(self, x: Any) -> dict[str, Any]:
            return {"count": (x["count"] if isinstance(x, dict) else x) + 1, "rows": NESTED}

    kind = AddNested if nested else Add
    flow = linear_flow.Flow("bench")
    for i in range(n):
        flow.add(kind(f"t{i}", rebind={"x": "x" if i == 0 else f"t{i - 1}"}, provides=f"t{i}"))
    return flow


def _io() -> dict[str, int]:
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            return {key: int(value) for key, value in (line.split(":") for line in f)}
    except OSError:
        return {}


class Measure:
    """One measured run: per-atom counts, CPU and wall time."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.statements: Counter[str] = Counter()
        self.round_trips = 0
        self.cpu = 0.0
        self.wall = 0.0
        self.bytes_written = 0
        self.write_calls = 0


def _run_once(
    url: str, n: int, conf: dict[str, Any], profile: cProfile.Profile | None, nested: bool = False
) -> Measure:
    """Load and run an n-task linear flow saved at ``url``, counting what reaches the database."""
    from flowkit import engines
    from flowkit.persistence import models

    with _counted(url, n, conf) as (backend, measure, start, stop):
        flow = _flow(n, nested)
        start()
        if profile is not None:
            profile.enable()
        engine = engines.load(flow, store={"x": 0}, backend=backend, book=models.LogBook("bench"))
        engine.run()
        if profile is not None:
            profile.disable()
        stop()
        last = engine.storage.fetch(f"t{n - 1}")
        assert (last["count"] if nested else last) == n
    return measure


def _fenced_once(url: str, n: int, conf: dict[str, Any]) -> Measure:
    """n fenced writes of two atoms (a conductor's per-task write), counting what reaches the database."""
    from flowkit.persistence import models
    from flowkit.persistence.base import WriteFence

    with (
        _counted(url, n, conf) as (backend, measure, start, stop),
        contextlib.closing(backend.get_connection()) as conn,
    ):
        book, fd = models.LogBook("bench"), models.FlowDetail("bench", uuid.uuid4().hex)
        atoms = [models.TaskDetail(f"t{i}", uuid.uuid4().hex) for i in range(n + 1)]
        for atom in atoms:
            fd.add(atom)
        book.add(fd)
        conn.save_logbook(book)
        fence = WriteFence("bench-job", 1)
        conn.fence_flow(fd.uuid, fence)
        start()
        for i in range(n):
            atoms[i].state, atoms[i].results, atoms[i + 1].state = "SUCCESS", i, "RUNNING"
            conn.save_flow_progress_fenced(fd, [atoms[i], atoms[i + 1]], False, fence)
        stop()
    return measure


Hooks = tuple[Any, Measure, Callable[[], None], Callable[[], None]]


@contextlib.contextmanager
def _counted(url: str, n: int, conf: dict[str, Any]) -> Iterator[Hooks]:
    """A fresh upgraded backend at ``url`` whose statements are counted between ``start()`` and ``stop()``."""
    from sqlalchemy import event

    from flowkit.persistence import backends

    measure = Measure(n)
    backend = backends.fetch({"connection": url, **conf})
    counting = [False]
    marks: dict[str, Any] = {}
    with tempfile.TemporaryFile() as trace:

        def on_connect(dbapi_conn: Any, record: Any) -> None:
            if url.startswith("sqlite"):

                def seen(statement: str) -> None:
                    if counting[0]:
                        measure.statements[statement.split(None, 1)[0].upper()] += 1

                dbapi_conn.set_trace_callback(seen)
            else:
                import psycopg

                dbapi_conn.pgconn.trace(trace.fileno())
                dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

        def start() -> None:
            trace.flush()
            marks["trace"] = trace.seek(0, os.SEEK_END)
            counting[0] = True
            marks["io"], marks["cpu"], marks["wall"] = _io(), time.process_time(), time.perf_counter()

        def stop() -> None:
            measure.wall = time.perf_counter() - marks["wall"]
            measure.cpu = time.process_time() - marks["cpu"]
            io_after = _io()
            counting[0] = False
            measure.bytes_written = io_after.get("wchar", 0) - marks["io"].get("wchar", 0)
            measure.write_calls = io_after.get("syscw", 0) - marks["io"].get("syscw", 0)
            marks["trace_end"] = trace.seek(0, os.SEEK_END)

        event.listen(backend.engine, "connect", on_connect)  # type: ignore[attr-defined]
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        try:
            yield backend, measure, start, stop
        finally:
            backend.close()
        trace.seek(marks.get("trace", 0))
        text = trace.read(marks.get("trace_end", 0) - marks.get("trace", 0)).decode("utf-8", "replace")
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) > 2 and parts[0] == "B" and parts[2].startswith("ReadyForQuery"):
                measure.round_trips += 1
            elif len(parts) > 2 and parts[0] == "F" and parts[2].startswith(("Query", "Execute")):
                measure.statements[parts[2].split()[0]] += 1


def _report(label: str, runs: list[Measure]) -> None:
    n = runs[0].n
    best = min(runs, key=lambda m: m.wall)
    cpu = min(m.cpu for m in runs)
    statements = sum(best.statements.values())
    kinds = ", ".join(f"{k} {v / n:.2f}" for k, v in best.statements.most_common())
    print(f"{label}")
    print(
        f"  wall {best.wall / n * 1e6:7.1f} us/atom (min of {len(runs)}),"
        f" CPU {cpu / n * 1e6:7.1f} us/atom (min)"
    )
    print(f"  statements {statements / n:.2f}/atom ({kinds})")
    if best.round_trips:
        print(f"  round trips {best.round_trips / n:.2f}/atom")
    if best.bytes_written:
        print(
            f"  written by this process {best.bytes_written / n:,.0f} B/atom"
            f" in {best.write_calls / n:.2f} calls/atom"
        )


_PHASES = (
    (
        "SQLite/psycopg (C)",
        ("sqlite3", "psycopg", "{method 'commit'", "{method 'execute", "{method 'executemany"),
    ),
    ("flowkit persistence", ("flowkit/persistence",)),
    ("SQLAlchemy", ("site-packages/sqlalchemy",)),
    ("JSON encoding", ("json/",)),
    ("flowkit run state / details", ("flowkit/_run_state", "flowkit/_detail_sync", "flowkit/_atom_record")),
    ("flowkit engine", ("flowkit/engines", "flowkit/types", "flowkit/task", "flowkit/atom")),
)


def _phases(profile: cProfile.Profile, n: int) -> None:
    """Own time of every function, summed by the layer its file belongs to."""
    stats: Any = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    totals: Counter[str] = Counter()
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        where = f"{filename}:{name}"
        phase = next((label for label, keys in _PHASES if any(k in where for k in keys)), "other")
        totals[phase] += tottime
    whole = sum(totals.values())
    print(f"  CPU by phase (cProfile own time, profiler overhead included; {whole / n * 1e6:.0f} us/atom):")
    for phase, seconds in totals.most_common():
        print(f"    {phase:30} {seconds / n * 1e6:7.1f} us/atom {seconds / whole:6.1%}")


@contextlib.contextmanager
def _postgresql() -> Iterator[Callable[[], str]]:
    from tests.services import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        import psycopg

        def fresh() -> str:
            name = f"bench_{uuid.uuid4().hex[:12]}"
            base = server.url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return server.url.rsplit("/", 1)[0] + f"/{name}"

        yield fresh
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--tasks", type=int, default=1000, help="tasks in the linear flow (1000)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per figure (3)")
    parser.add_argument(
        "--postgresql", action="store_true", help="also start a PostgreSQL server and measure it"
    )
    parser.add_argument("--profile", action="store_true", help="print CPU by phase for SQLite (normal)")
    parser.add_argument(
        "--fenced", action="store_true", help="also measure n fenced writes of two atoms (a conductor's)"
    )
    parser.add_argument(
        "--nested", action="store_true", help="each task returns an 8.5 KB nested result (a dict of lists)"
    )
    parser.add_argument(
        "--only", choices=("sqlite", "sqlite-full", "postgresql"), help="measure this one configuration"
    )
    args = parser.parse_args(argv)
    n = args.tasks
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flowkit-durable-")))

        def sqlite_url() -> str:
            return f"sqlite:///{tmp / (uuid.uuid4().hex + '.db')}"

        _run_once(sqlite_url(), 20, {}, None, args.nested)  # warm-up: imports, first compilations
        configs: list[tuple[str, str, Callable[[], str], dict[str, Any]]] = [
            ("sqlite", "SQLite, synchronous=NORMAL (default)", sqlite_url, {}),
            ("sqlite-full", "SQLite, synchronous=FULL", sqlite_url, {"sqlite_synchronous": "full"}),
        ]
        if args.postgresql or args.only == "postgresql":
            fresh = stack.enter_context(_postgresql())
            configs.append(("postgresql", "PostgreSQL (test server: fsync off)", fresh, {}))
        results = "8.5 KB nested results" if args.nested else "int results"
        print(f"durable linear flow of {n} tasks ({results}), per atom (load + run; {os.uname().nodename})")
        for key, label, make_url, conf in configs:
            if args.only and key != args.only:
                continue
            runs = [_run_once(make_url(), n, conf, None, args.nested) for _ in range(args.repeat)]
            _report(label, runs)
            if args.fenced:
                fenced = [_fenced_once(make_url(), n, conf) for _ in range(args.repeat)]
                _report(f"{label}: fenced write of 2 atoms (per write)", fenced)
        if args.profile:
            profile = cProfile.Profile(timer=time.process_time)
            _run_once(sqlite_url(), n, {}, profile, args.nested)
            print("SQLite, synchronous=NORMAL, profiled")
            _phases(profile, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
