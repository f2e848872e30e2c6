#!/usr/bin/env python3
"""Measure jobboards and conductors: jobs per second, and take-over time after SIGKILL.

Usage (from anywhere; the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_jobs.py                      # starts its own Redis and ZooKeeper
    python tools/bench_jobs.py --jobs 2000 --boards redis
    python tools/bench_jobs.py --store postgresql      # persistence on a PostgreSQL it starts

Rows:

* throughput: ``--jobs`` trivial one-task flows are posted (each with its
  logbook saved to the persistence backend), then 1 or 3 conductors start and
  run them all; jobs/s is the count divided by the time from the first claim
  to the board being empty. Conductors are ``flowkit conductor`` processes on
  Redis and ZooKeeper, threads on the memory board (it lives in one process).
* CPU per job: one conductor in the bench's own process runs ``--jobs``
  jobs; its CPU time per job does not move with the machine's load as the
  throughput rows do (the servers' CPU is not counted).
* take-over: 3 conductors, one job whose task waits on a gate; the holder is
  killed with SIGKILL and the time until the task starts in another conductor
  is measured, next to the claim expiry (``--expiry``; the session timeout on
  ZooKeeper). The target is expiry + 1 s.

Targets (issue 10): at least 200 jobs/s with 3 conductors on Redis on a
2-core machine; take-over within expiry + 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A sibling script by its plain name (this script's directory is on the path), as
# every script in tools/ imports the others.
from _child_env import child_env  # noqa: E402

from flowkit import conductors, engines  # noqa: E402 - after the path is set
from flowkit.jobs import backends  # noqa: E402
from flowkit.jobs.backends.impl_memory import MemoryJobBoard  # noqa: E402
from flowkit.persistence import backends as persistence_backends  # noqa: E402
from flowkit.persistence import models  # noqa: E402

# By its dotted name: the conductor processes import the flow factories so (each
# job's flow detail records it). tools/test.sh type-checks it under that name.
from tools import _bench_jobs_flows as bench_flows  # noqa: E402

TIMEOUT = 600.0


@contextlib.contextmanager
def servers(boards: list[str], store: str) -> Iterator[dict[str, Any]]:
    """Start the servers the chosen boards and store need (the test suite's fixtures, outside pytest)."""
    from tests import services

    started: dict[str, Any] = {}
    try:
        if store == "postgresql":
            started["postgresql"] = services.PostgresServer()
            started["postgresql"].start()
        if "redis" in boards:
            started["redis"] = services.RedisServer()
            started["redis"].start()
        if "zookeeper" in boards:
            started["zookeeper"] = services.ZooKeeperServer()
            started["zookeeper"].start()
        yield started
    finally:
        for server in started.values():
            server.close()


def store_url(label: str, running: dict[str, Any], work: Path) -> str:
    """A fresh, empty persistence store for one row: a SQLite file, or a PostgreSQL database."""
    if "postgresql" in running:
        return str(running["postgresql"].create_database(f"bench_{label}_{uuid.uuid4().hex[:8]}"))
    return f"sqlite:///{work / f'{label}.db'}"


def board_url(kind: str, running: dict[str, Any]) -> str:
    unique = uuid.uuid4().hex[:10]
    if kind == "redis":
        return f"redis://127.0.0.1:{running['redis'].port}/0?namespace=bench-{unique}"
    return f"zookeeper://{running['zookeeper'].hosts}/flowkit-bench/{unique}"


def post_jobs(board: Any, persistence: Any, count: int, factory: Any, store: dict[str, Any]) -> list[Any]:
    jobs = []
    with persistence.get_connection() as conn:
        for i in range(count):
            book = models.LogBook(f"bench-{i}")
            flow_detail = models.FlowDetail(f"bench-{i}", str(uuid.uuid4()))
            book.add(flow_detail)
            engines.save_factory_details(flow_detail, factory, None, None)
            conn.save_logbook(book)
            jobs.append(board.post(f"bench-{i}", book=book, details={"store": store}))
    return jobs


def spawn_conductor(
    url: str, connection: str, name: str, expiry: float, log_dir: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "flowkit", "conductor", "--board", url, "--connection", connection,
        "--name", name, "--wait-timeout", "0.01", "--max-failures", "0", "--claim-expiry", str(expiry),
    ]  # fmt: skip
    with open(log_dir / f"{name}.log", "wb") as log:  # child_env: from bytecode, as installed
        return subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT)


def wait_for(predicate: Any, what: str, timeout: float = TIMEOUT, interval: float = 0.002) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def throughput(kind: str, count: int, conductors_count: int, running: dict[str, Any], work: Path) -> float:
    """Jobs per second with ``conductors_count`` conductors on a board of ``kind``."""
    connection = store_url(f"{kind}_{conductors_count}", running, work)
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    if kind == "memory":
        board: Any = MemoryJobBoard("bench", persistence=persistence)
    else:
        url = board_url(kind, running)
        board = backends.fetch("bench", url, persistence=persistence)
    board.connect()
    post_jobs(board, persistence, count, bench_flows.one_task, {})
    procs: list[subprocess.Popen[bytes]] = []
    threads: list[tuple[Any, threading.Thread]] = []
    try:
        if kind == "memory":
            for i in range(conductors_count):
                made = conductors.backends.fetch(
                    "blocking", f"c{i}", board, persistence=persistence, wait_timeout=0.01
                )
                threads.append((made, threading.Thread(target=made.run)))
            for _, thread in threads:
                thread.start()
        else:
            for i in range(conductors_count):
                procs.append(spawn_conductor(url, connection, f"{kind}-c{i}", 30.0, work))
        wait_for(lambda: board.job_count < count, "the first job taken", interval=0.001)
        started = time.monotonic()
        wait_for(lambda: board.job_count == 0, "every job done", interval=0.005)
        elapsed = time.monotonic() - started
    finally:
        for made, _ in threads:
            made.stop()
        for _, thread in threads:
            thread.join(30)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        board.close()
        persistence.close()
    # The first job was already taken when the clock started: count it out.
    return (count - 1) / elapsed


def cpu_per_job(kind: str, count: int, running: dict[str, Any], work: Path) -> tuple[float, float]:
    """CPU and wall milliseconds per job of one conductor run in this process.

    CPU time is what a conductor costs whatever else runs on the machine (the
    throughput rows move with the machine's load); it counts this process's
    threads (the conductor and its board client), not the servers.
    """
    connection = store_url(f"{kind}_cpu", running, work)
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    if kind == "memory":
        board: Any = MemoryJobBoard("bench", persistence=persistence)
    else:
        board = backends.fetch("bench", board_url(kind, running), persistence=persistence)
    board.connect()
    post_jobs(board, persistence, count, bench_flows.one_task, {})
    made = conductors.backends.fetch(
        "blocking", "cpu", board, persistence=persistence, wait_timeout=0.01, claim_expiry=30.0
    )

    def stop_when_done() -> None:
        wait_for(lambda: board.job_count == 0, "every job done", interval=0.01)
        made.stop()

    stopper = threading.Thread(target=stop_when_done)
    try:
        stopper.start()
        cpu, wall = time.process_time(), time.monotonic()
        made.run()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        stopper.join()
    finally:
        board.close()
        persistence.close()
    return cpu / count * 1000, wall / count * 1000


def takeover(kind: str, expiry: float, running: dict[str, Any], work: Path) -> float:
    """Seconds from SIGKILL of the holder to the job's task starting in another conductor."""
    connection = store_url(f"{kind}_takeover", running, work)
    persistence = persistence_backends.fetch(connection)
    with persistence.get_connection() as conn:
        conn.upgrade()
    url = board_url(kind, running)
    board = backends.fetch("bench", url, persistence=persistence)
    board.connect()
    calls, gate = work / f"{kind}-calls", work / f"{kind}-gate"
    post_jobs(board, persistence, 1, bench_flows.gated, {"calls": str(calls), "gate": str(gate)})
    procs = {}
    try:
        for i in range(3):
            proc = spawn_conductor(url, connection, f"{kind}-t{i}", expiry, work)
            procs[proc.pid] = proc

        def starts() -> list[dict[str, Any]]:
            if not calls.exists():
                return []
            return [json.loads(line) for line in calls.read_text().splitlines() if line]

        first = wait_for(starts, "the job started")[0]
        os.kill(first["pid"], signal.SIGKILL)
        procs[first["pid"]].wait(10)
        killed_at = time.time()
        second = wait_for(lambda: starts()[1:], "the job resumed elsewhere", interval=0.005)[0]
        gate.touch()
        return float(second["time"]) - killed_at
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        board.close()
        persistence.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per throughput row (default: 1000)")
    parser.add_argument("--boards", default="memory,redis,zookeeper", help="comma-separated board kinds")
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="persistence: a SQLite file per row, or a database per row on a PostgreSQL server it starts",
    )
    parser.add_argument(
        "--expiry", type=float, default=2.0, help="claim expiry / session timeout for take-over"
    )
    args = parser.parse_args()
    boards = [b.strip() for b in args.boards.split(",") if b.strip()]
    print(
        f"# flowkit jobboards: {args.jobs} trivial one-task jobs, {args.store} persistence, "
        f"{os.cpu_count()} cores"
    )
    with servers(boards, args.store) as running, tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        work = Path(tmp)
        print(f"{'board':<10} {'conductors':>10} {'jobs/s':>10}")
        for kind in boards:
            for count in (1, 3):
                rate = throughput(kind, args.jobs, count, running, work)
                print(f"{kind:<10} {count:>10} {rate:>10.0f}", flush=True)
        print()
        print(f"{'board':<10} {'CPU ms/job':>11} {'wall ms/job':>12}   (one conductor in this process)")
        for kind in boards:
            cpu, wall = cpu_per_job(kind, args.jobs, running, work)
            print(f"{kind:<10} {cpu:>11.2f} {wall:>12.2f}", flush=True)
        print()
        print(f"{'board':<10} {'expiry s':>10} {'take-over s':>12} {'target s':>10}")
        for kind in boards:
            if kind == "memory":
                continue
            seconds = takeover(kind, args.expiry, running, work)
            print(f"{kind:<10} {args.expiry:>10.1f} {seconds:>12.2f} {args.expiry + 1:>10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
