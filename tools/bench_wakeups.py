#!/usr/bin/env python3
"""Measure how late the worker-based engine acts on its deadlines, and how long an idle worker takes to stop.

Usage (from anywhere; the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_wakeups.py                          # starts its own redis-server
    python tools/bench_wakeups.py --go go_worker/flowkit-worker --samples 20

Rows (min / median / max over ``--samples``):

* request expiry: a request no worker offers, failed at its ``transition_timeout``;
  lateness = from the atom's RUNNING notification (just before the request is
  held) to its FAILURE notification, minus the timeout;
* task timeout: a task on a real Python worker that sleeps past its own
  ``timeout``; lateness = from the worker's RUNNING reply being read to the
  atom's FAILURE notification, minus the timeout (the reply's reading is taken
  from the engine's start watcher);
* engine round trips per task: a fan-out and a chain of trivial tasks on two
  Python workers, counting the engine process's Redis round trips
  (redis-py's ``send_packed_command``: one per command or pipeline);
* idle worker stop: SIGTERM to exit of an idle Python worker (and a Go one
  with ``--go``), sent at a random moment of its blocking read.

Redis ends a blocked read on its timer's tick (``hz`` 10, every 100 ms): the
engine's reply reader used to act on a deadline only when its read of up to
100 ms returned (and on timeouts only at its next look for workers, every
0.25 s), a worker's stop waited for its read of up to 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _child_env import child_env  # noqa: E402
from bench_workers import (  # noqa: E402
    NOOP_MODULE,
    START_TIMEOUT,
    _live_workers,
    _wait,
    chain,
    fan_out,
    measure_and_print,
    worker_arguments,
    workers,
)

from flowkit import engines  # noqa: E402 - after the path is set
from flowkit import exceptions as exc  # noqa: E402
from flowkit import states as st  # noqa: E402
from flowkit.patterns import linear_flow  # noqa: E402
from tools._bench_worker_tasks import Nap, Noop  # noqa: E402


def _lateness_of_failure(engine: Any, atom: str, start: Callable[[], float | None], limit: float) -> float:
    """Run ``engine`` (which must fail ``atom``); seconds from ``start()`` to its FAILURE, minus ``limit``."""
    failed: list[float] = []

    def on_atom(state: str, details: dict[str, Any]) -> None:
        if details.get("task_name") == atom and state == st.FAILURE and not failed:
            failed.append(time.monotonic())

    engine.atom_notifier.register("*", on_atom)
    with contextlib.suppress(exc.RequestTimeout, exc.TaskTimeout):
        engine.run()
    began = start()
    if not failed or began is None:
        raise RuntimeError(f"atom {atom!r} did not fail as expected")
    return failed[0] - began - limit


def expiry_lateness(url: str, timeout: float) -> float:
    topic = f"nobody-{uuid.uuid4().hex[:8]}"
    flow = linear_flow.Flow("expiry").add(Noop(name="held", inject={"value": 1}))
    engine = engines.load(flow, engine="worker-based", url=url, topics=[topic], transition_timeout=timeout)
    running: list[float] = []

    def on_atom(state: str, details: dict[str, Any]) -> None:
        if state == st.RUNNING and not running:
            running.append(time.monotonic())

    engine.atom_notifier.register("*", on_atom)
    return _lateness_of_failure(engine, "held", lambda: running[0] if running else None, timeout)


def timeout_lateness(url: str, topic: str, timeout: float) -> float:
    flow = linear_flow.Flow("timeout").add(
        Nap(name="nap", timeout=timeout, inject={"seconds": timeout + 1.0})
    )
    engine: Any = engines.load(flow, engine="worker-based", url=url, topics=[topic])
    started: list[float] = []
    # Told as the reader reads the worker's RUNNING reply: the task's time counts from there.
    engine.start_watchers.append(lambda atom, worker: started.append(time.monotonic()))
    return _lateness_of_failure(engine, "nap", lambda: started[0] if started else None, timeout)


@contextlib.contextmanager
def counted_round_trips() -> Iterator[list[int]]:
    """Count this process's Redis round trips (redis-py sends each command or pipeline once)."""
    import redis.connection

    count = [0]
    original: Callable[..., None] = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def round_trips_per_task(
    url: str, topic: str, make_flow: Callable[[], Any], tasks: int, repeat: int
) -> float:
    """Fewest engine round trips per task over ``repeat`` runs (after a warm-up)."""
    best = float("inf")
    for attempt in range(repeat + 1):
        engine = engines.load(make_flow(), engine="worker-based", url=url, topics=[topic])
        with counted_round_trips() as count:
            engine.run()
        if attempt:
            best = min(best, count[0] / tasks)
    return best


def stop_seconds(argv: list[str], url: str, samples: int) -> list[float]:
    """SIGTERM-to-exit seconds of an idle worker, started anew for each sample."""
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("FLOWKIT_WORKER_SECRET", None)
    times = []
    for _ in range(samples):
        topic = f"stop-{uuid.uuid4().hex[:8]}"
        proc = subprocess.Popen(
            [*argv, "--redis", url, "--topic", topic],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait(functools.partial(_live_workers, url, topic), START_TIMEOUT, "the worker advertising")
            time.sleep(random.uniform(0.0, 0.6))  # a random moment of its read's block
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            times.append(time.monotonic() - began)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return times


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    return (
        f"{ordered[0] * 1e3:7.1f} / {statistics.median(ordered) * 1e3:6.1f} / {ordered[-1] * 1e3:6.1f} ms"
        f" (min / median / max of {len(values)})"
    )


def measure(args: argparse.Namespace, url: str) -> list[tuple[str, str]]:
    python = shlex.split(args.python_worker)
    rows: list[tuple[str, str]] = []
    late = [expiry_lateness(url, args.timeout) for _ in range(args.samples)]
    rows.append((f"request expiry lateness (transition_timeout {args.timeout:g} s)", _ms(late)))
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    with workers([*python, "--tasks", "tools._bench_worker_tasks"], 2, url, topic):
        late = [timeout_lateness(url, topic, 0.2) for _ in range(args.samples)]
        rows.append(("task timeout lateness (timeout 0.2 s, Python worker)", _ms(late)))
        for name, make, tasks in (
            (f"{args.tasks} trivial tasks, unordered", fan_out(Noop, args.tasks), args.tasks),
            (f"{args.chain} trivial tasks, linear", chain(args.chain), args.chain),
        ):
            trips = round_trips_per_task(url, topic, make, tasks, args.repeat)
            rows.append((f"engine round trips per task, {name}, 2 Python workers", f"{trips:7.3f}"))
    rows.append(
        (
            "idle Python worker: SIGTERM to exit",
            _ms(stop_seconds([*python, "--tasks", NOOP_MODULE], url, args.samples)),
        )
    )
    if args.go:
        rows.append(("idle Go worker: SIGTERM to exit", _ms(stop_seconds([args.go], url, args.samples))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    worker_arguments(parser)
    parser.add_argument("--samples", type=int, default=10, help="samples per lateness or stop row (10)")
    parser.add_argument(
        "--timeout", type=float, default=0.5, help="transition_timeout of the expiry row, s (0.5)"
    )
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in the fan-out round-trip row (1000)")
    parser.add_argument("--chain", type=int, default=100, help="tasks in the chain round-trip row (100)")
    parser.add_argument(
        "--repeat", type=int, default=2, help="measured runs per round-trip row, fewest kept (2)"
    )
    return measure_and_print(parser.parse_args(argv), measure, "worker-based engine wake-ups")


if __name__ == "__main__":
    raise SystemExit(main())
