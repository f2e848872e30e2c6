#!/usr/bin/env python3
"""Measure the worker-based engine: trivial-task throughput, per-task latency, CPU-bound work.

Usage (from anywhere; the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_workers.py                        # starts its own redis-server
    python tools/bench_workers.py --redis redis://host:6379/0 --tasks 5000
    python tools/bench_workers.py --go go_worker/flowkit-worker   # adds the Go worker

Workers are real processes (``python -m flowkit worker``, or the Go binary),
started for each configuration and stopped after it. Rows:

* throughput: an unordered flow of ``--tasks`` trivial tasks, with 1 and 2 workers,
  and with 1 worker found by an engine given no topics;
* latency: a linear flow of ``--chain`` trivial tasks (each waits for the previous),
  wall time divided by the number of tasks;
* per run: ``--runs`` runs each of a 1-task and a 100-task unordered flow, each
  timed from ``engines.load()`` to ``run()`` returning (a fresh engine, its
  connection, scan and reply stream included), min and median: the fixed cost
  of one run in a process that runs many;
* with ``--wait-workers N``: an engine's ``worker_wait`` of ``--wait`` seconds for a
  task nobody offers, while ``N`` workers that write no arrival entry are
  advertised on its topic (adverts written by this script): the Redis commands
  and adverts read per look for workers (``INFO commandstats``, every client's);
* with ``--go``: the same throughput rows for the Go worker (task ``Echo``, and its
  Python twin for comparison), and ``--primes`` CountPrimes tasks on 2 workers of each.

Each figure is the best of ``--repeat`` runs after one warm-up run (the per-run
rows: min and median of ``--runs``, after one warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# A sibling script by its plain name (this script's directory is on the path), as
# every script in tools/ imports the others.
from _child_env import child_env  # noqa: E402

from flowkit import engines  # noqa: E402 - after the path is set
from flowkit.patterns import linear_flow, unordered_flow  # noqa: E402

# By its dotted name: the workers serve NOOP_MODULE, and a task's name on the
# wire is module.Class. tools/test.sh type-checks it under that name.
from tools._bench_worker_tasks import Noop  # noqa: E402

NOOP_MODULE = "tools._bench_worker_tasks"
TWINS_MODULE = "tests.workers.behaviour_tasks"  # Python twins of the Go example tasks
START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def own_redis() -> Iterator[str]:
    """Run a throw-away redis-server (no persistence) on a free port; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit(
            "bench_workers: redis-server is not on PATH (apt-get install redis-server), or pass --redis URL"
        )
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="flowkit-bench-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        _wait(lambda: _ping(port), 10.0, "redis-server to accept connections")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(0.05)


def _live_workers(url: str, topic: str) -> int:
    from flowkit.engines.worker_based import _transport

    client = _transport.connect(url)
    try:
        return len(_transport.live_workers(client, "flowkit", topic, None))
    finally:
        client.close()


@contextlib.contextmanager
def workers(argv: list[str], count: int, url: str, topic: str) -> Iterator[None]:
    """Start ``count`` worker processes (``argv`` + topic) and wait until all advertise."""
    env = child_env()  # workers run from bytecode, as an installed flowkit does
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("FLOWKIT_WORKER_SECRET", None)
    procs = [
        subprocess.Popen(
            [*argv, "--redis", url, "--topic", topic], cwd=ROOT, env=env, stdin=subprocess.DEVNULL
        )
        for _ in range(count)
    ]
    try:

        def ready() -> bool:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {argv} exited with {proc.returncode} before advertising")
            return _live_workers(url, topic) >= count

        _wait(ready, START_TIMEOUT, f"{count} worker(s) on {topic}")
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def best_run(
    make_flow: Callable[[], Any], url: str, topic: str, repeat: int, *, discover: bool = False
) -> float:
    """Seconds of the fastest ``engine.run()`` of a fresh flow, after one warm-up run.

    ``discover``: load the engine without topics, so it finds the workers' own.
    """
    times = []
    # Engine options (load()'s **options are Any): none, or the topic to send to.
    topics: dict[str, Any] = {} if discover else {"topics": [topic]}
    for attempt in range(repeat + 1):
        # The library's default (TaskFlow's): no worker_wait check before the run;
        # workers() has already waited for every worker to advertise.
        engine = engines.load(make_flow(), engine="worker-based", url=url, **topics)
        engine.compile()
        engine.prepare()
        began = time.perf_counter()
        engine.run()
        if attempt:  # the first run warms up imports, connections and the workers
            times.append(time.perf_counter() - began)
    return min(times)


def per_run(make_flow: Callable[[], Any], url: str, topic: str, runs: int) -> tuple[float, float]:
    """Min and median seconds from ``engines.load()`` to ``run()`` returning, over ``runs`` runs.

    Unlike :func:`best_run`, loading is timed too: a process that runs many small
    flows pays the engine's set-up (connection, worker scan, reply stream) every
    time, so a fixed wait anywhere in it shows here, not in the throughput rows.
    """
    times = []
    for attempt in range(runs + 1):
        flow = make_flow()
        began = time.perf_counter()
        engines.load(flow, engine="worker-based", url=url, topics=[topic]).run()
        if attempt:  # the first run warms up imports and the worker
            times.append(time.perf_counter() - began)
    return min(times), statistics.median(times)


def _per_run_rows(
    kind: str, task_cls: type, url: str, topic: str, runs: int, rows: list[tuple[str, str]]
) -> None:
    for count in (1, 100):
        low, median = per_run(fan_out(task_cls, count), url, topic, runs)
        rows.append(
            (
                f"{kind} x1: one run of {count} {task_cls.__name__} task(s), load to return",
                f"{low * 1e3:8.2f} ms min, {median * 1e3:.2f} ms median of {runs}",
            )
        )


def fan_out(task_cls: type, count: int, **inject: Any) -> Callable[[], Any]:
    def make() -> Any:
        return unordered_flow.Flow("fan").add(
            *(task_cls(name=f"t{i}", inject={"value": i, **inject}) for i in range(count))
        )

    return make


def chain(count: int) -> Callable[[], Any]:
    def make() -> Any:
        flow = linear_flow.Flow("chain").add(Noop(name="t0", provides="v0", inject={"value": 0}))
        for i in range(1, count):
            flow.add(Noop(name=f"t{i}", provides=f"v{i}", rebind={"value": f"v{i - 1}"}))
        return flow

    return make


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    worker_arguments(parser)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks in the throughput flow (2000)")
    parser.add_argument("--chain", type=int, default=200, help="tasks in the latency flow (200)")
    parser.add_argument("--primes", type=int, default=100, help="CountPrimes tasks in the CPU rows (100)")
    parser.add_argument("--limit", type=int, default=300_000, help="CountPrimes limit (300000)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per row, best kept (3)")
    parser.add_argument("--runs", type=int, default=20, help="runs timed in each per-run row (20)")
    parser.add_argument(
        "--wait-workers",
        type=int,
        default=0,
        metavar="N",
        help="also measure worker_wait's looks with N advertised workers (0: not measured)",
    )
    parser.add_argument("--wait", type=float, default=3.0, help="worker_wait of the look rows, seconds (3)")
    parser.add_argument("--looks-only", action="store_true", help="measure only the --wait-workers rows")
    return measure_and_print(parser.parse_args(argv), measure, "worker-based engine")


def worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every worker benchmark takes: which Redis, and which workers to start."""
    parser.add_argument("--redis", metavar="URL", help="use this Redis instead of starting one")
    parser.add_argument("--go", metavar="BINARY", help="the Go worker binary (go_worker/cmd/flowkit-worker)")
    parser.add_argument(
        "--python-worker",
        metavar="CMD",
        default=f"{sys.executable} -m flowkit worker",
        help="command starting a Python worker, before its --tasks/--redis/--topic (default: %(default)s)",
    )


def measure_and_print(
    args: argparse.Namespace, measure: Callable[[argparse.Namespace, str], list[tuple[str, str]]], title: str
) -> int:
    """Measure on ``--redis`` (or a Redis of its own, started and stopped here) and print the rows."""
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(own_redis())
        rows = measure(args, url)
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


def measure(args: argparse.Namespace, url: str) -> list[tuple[str, str]]:
    python = shlex.split(args.python_worker)
    rows: list[tuple[str, str]] = []
    if args.wait_workers:
        rows.append(wait_looks(url, args.wait_workers, args.wait))
    if args.looks_only:
        return rows

    def topic() -> str:
        return f"bench-{uuid.uuid4().hex[:8]}"

    for count in (1, 2):
        name = topic()
        with workers([*python, "--tasks", NOOP_MODULE], count, url, name):
            seconds = best_run(fan_out(Noop, args.tasks), url, name, args.repeat)
            rows.append(
                (
                    f"python x{count}: {args.tasks} trivial tasks, unordered",
                    f"{args.tasks / seconds:8.0f} tasks/s",
                )
            )
            if count == 1:
                seconds = best_run(fan_out(Noop, args.tasks), url, name, args.repeat, discover=True)
                rows.append(
                    (
                        f"python x1: {args.tasks} trivial tasks, unordered, no topics given",
                        f"{args.tasks / seconds:8.0f} tasks/s",
                    )
                )
                seconds = best_run(chain(args.chain), url, name, args.repeat)
                rows.append(
                    (
                        f"python x1: {args.chain} trivial tasks, linear",
                        f"{seconds / args.chain * 1e3:8.3f} ms/task",
                    )
                )
                _per_run_rows("python", Noop, url, name, args.runs, rows)
    if args.go:
        from tests.workers.behaviour_tasks import CountPrimes, Echo

        kinds = {"python": [*python, "--tasks", TWINS_MODULE], "go": [os.path.abspath(args.go)]}
        for kind, command in kinds.items():
            for count in (1, 2):
                name = topic()
                with workers(command, count, url, name):
                    if count == 1:
                        _per_run_rows(kind, Echo, url, name, args.runs, rows)
                    seconds = best_run(fan_out(Echo, args.tasks), url, name, args.repeat)
                    rows.append(
                        (
                            f"{kind} x{count}: {args.tasks} Echo, unordered",
                            f"{args.tasks / seconds:8.0f} tasks/s",
                        )
                    )
                    if count == 2:
                        make = _primes(CountPrimes, args.primes, args.limit)
                        seconds = best_run(make, url, name, args.repeat)
                        rows.append(
                            (f"{kind} x2: {args.primes} CountPrimes({args.limit})", f"{seconds:8.3f} s")
                        )
    return rows


@contextlib.contextmanager
def _beating(url: str, topic: str, count: int, heartbeat: float = 1.0) -> Iterator[None]:
    """Keep ``count`` adverts on ``topic`` offering Noop, rewritten every ``heartbeat`` as workers do.

    Workers of a release before arrival entries: they write none.
    """
    import threading

    from flowkit.engines.worker_based import _transport, protocol

    client = _transport.connect(url)
    stop = threading.Event()

    def beat() -> None:
        pipe = client.pipeline(transaction=False)
        expires_ms = int((time.time() + 3 * heartbeat) * 1000)
        for i in range(count):
            worker = f"bench-idle-{i}"
            notify = protocol.notify_message(
                worker, topic, [protocol.task_name(Noop)], heartbeat=heartbeat, visibility_timeout=30.0
            )
            key = protocol.worker_key("flowkit", worker)
            pipe.hset(key, mapping=protocol.encode(notify, None))  # type: ignore[arg-type]
            pipe.pexpire(key, int(3000 * heartbeat))
            pipe.zadd(protocol.workers_key("flowkit", topic), {worker: expires_ms})
        pipe.execute()

    def loop() -> None:
        while not stop.wait(heartbeat):
            beat()

    beat()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        client.close()


def wait_looks(url: str, count: int, wait: float) -> tuple[str, str]:
    """Commands per look of a ``worker_wait`` for a task none of ``count`` advertised workers offers."""
    import redis

    from flowkit import exceptions
    from tests.workers.behaviour_tasks import Echo

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url)
    try:
        with _beating(url, topic, count):
            engine = engines.load(
                unordered_flow.Flow("f").add(Echo(name="missing", inject={"value": 1})),
                engine="worker-based",
                url=url,
                topics=[topic],
                worker_wait=wait,
            )
            client.config_resetstat()
            cpu = time.thread_time()  # the wait runs in this thread; the beats in their own
            try:
                engine.run()
            except exceptions.NotFound:
                pass
            else:
                raise RuntimeError("worker_wait found a worker for a task nobody offers")
            cpu = time.thread_time() - cpu
            stats = client.info("commandstats")
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}
    # ZRANGE: one per look (the topic's members); the beats write no ZRANGE nor HGETALL
    looks = calls.get("zrange", 0)
    spent = sum(calls.get(name, 0) for name in ("zremrangebyscore", "zrange", "hgetall"))
    return (
        f"worker_wait {wait:g} s, {count} workers (heartbeat 1 s) without arrival entries",
        f"{looks} looks, {spent / max(looks, 1):.1f} commands and"
        f" {calls.get('hgetall', 0) / max(looks, 1):.1f} adverts read per look;"
        f" engine CPU {cpu / max(looks, 1) * 1e3:.2f} ms per look",
    )


def _primes(task_cls: type, count: int, limit: int) -> Callable[[], Any]:
    def make() -> Any:
        return unordered_flow.Flow("primes").add(
            *(task_cls(name=f"p{i}", inject={"limit": limit}) for i in range(count))
        )

    return make


if __name__ == "__main__":
    sys.exit(main())
