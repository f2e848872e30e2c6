#!/usr/bin/env python3
"""Measure what one Python worker process spends per request, for one or more checkouts, interleaved.

Usage (from anywhere; this checkout's engine drives every worker unless ``--engine``)::

    git worktree add /tmp/before 446851b
    python tools/bench_worker_cpu.py /tmp/before .             # 4 rounds of 3 runs each
    python tools/bench_worker_cpu.py --rounds 2 --runs 5 /tmp/before .

Throughput alone hides where a worker's time goes, and on a shared machine it
moves with everybody else's load; CPU time per request moves much less. For
each checkout in turn, round after round, a worker process of that checkout
(``python -m flowkit worker``) serves ``--runs`` unordered flows of
``--tasks`` trivial tasks (after one warm-up flow), and each run reports, per
request:

* tasks/s;
* the worker's CPU (all threads, from ``/proc/<pid>/task/*/schedstat``), user
  and system time (``/proc/<pid>/stat``, 10 ms ticks);
* the CPU of its reading thread (the process's main thread), of its writer
  (the second thread started last) and of its pool threads together: thread
  ids come in creation order, so this holds unless the kernel's ids wrap;
* voluntary and involuntary context switches (``/proc/<pid>/task/*/status``);
* Redis commands (``INFO commandstats``, every client's: the engine's too) and
  ``MULTI`` blocks, the worker's writes.

The engine is the same for every checkout (this one, or ``--engine``): how an
engine sends its requests changes the worker's batches, and so its cost. The
table gives min / median over all runs (best / median for tasks/s).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
NOOP_MODULE = "tools._bench_worker_tasks"

__all__ = ["main"]


def _thread_stats(pid: int) -> dict[str, Any]:
    """CPU ns per thread id and summed context switches of process ``pid``."""
    cpu: dict[int, int] = {}
    voluntary = involuntary = 0
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/schedstat") as f:
                cpu[int(task.rsplit("/", 1)[1])] = int(f.read().split()[0])
            with open(f"{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        involuntary += int(line.split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return {
        "cpu": cpu,
        "vol": voluntary,
        "invol": involuntary,
        "user": int(fields[11]),
        "sys": int(fields[12]),
    }


def _child(checkout: str, url: str, tasks: int, runs: int) -> None:
    """Start a worker of ``checkout``, drive it with this process's engine, print one JSON line a run."""
    import redis

    from flowkit import engines
    from flowkit.patterns import unordered_flow
    from tools._bench_worker_tasks import Noop

    client = redis.Redis.from_url(url)
    topic = f"cpu-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, PYTHONPATH=checkout)
    env.pop("FLOWKIT_WORKER_SECRET", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    argv = [
        sys.executable,
        "-m",
        "flowkit",
        "worker",
        "--tasks",
        NOOP_MODULE,
        "--redis",
        url,
        "--topic",
        topic,
    ]
    worker = subprocess.Popen(argv, cwd=checkout, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not client.zrange(f"flowkit:workers:{topic}", 0, -1):
            if worker.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench_worker_cpu: the worker of {checkout} did not advertise")
            time.sleep(0.05)
        for attempt in range(runs + 1):
            flow = unordered_flow.Flow("fan").add(
                *(Noop(name=f"t{i}", inject={"value": i}) for i in range(tasks))
            )
            engine = engines.load(flow, engine="worker-based", url=url, topics=[topic])
            engine.compile()
            engine.prepare()
            before, calls_before = _thread_stats(worker.pid), client.info("commandstats")
            began = time.perf_counter()
            engine.run()
            wall = time.perf_counter() - began
            time.sleep(0.2)  # the last acknowledgements land after run() returns
            after, calls_after = _thread_stats(worker.pid), client.info("commandstats")
            if attempt:  # the first run warms up imports, connections and the worker
                print(
                    json.dumps(_per_request(before, after, calls_before, calls_after, tasks, wall)),
                    flush=True,
                )
    finally:
        worker.terminate()
        worker.wait(15)


def _per_request(
    before: dict[str, Any],
    after: dict[str, Any],
    calls_before: Any,
    calls_after: Any,
    tasks: int,
    wall: float,
) -> dict[str, float]:
    tids = sorted(after["cpu"])
    spent = {tid: (after["cpu"][tid] - before["cpu"].get(tid, 0)) / 1e3 / tasks for tid in tids}
    calls = {
        name.removeprefix("cmdstat_"): stats["calls"] - calls_before.get(name, {}).get("calls", 0)
        for name, stats in calls_after.items()
        if name != "cmdstat_info"
    }
    return {
        "tasks/s": tasks / wall,
        "cpu": sum(spent.values()),
        "user": (after["user"] - before["user"]) / TICK / tasks * 1e6,
        "sys": (after["sys"] - before["sys"]) / TICK / tasks * 1e6,
        "reader": spent[tids[0]],
        "pool": sum(spent[tid] for tid in tids[1:-2]),
        "writer": spent[tids[-2]],
        "cs vol": (after["vol"] - before["vol"]) / tasks,
        "cs invol": (after["invol"] - before["invol"]) / tasks,
        "MULTI": calls.get("multi", 0) / tasks,
        "commands": sum(calls.values()) / tasks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", help="flowkit checkouts whose workers are measured")
    parser.add_argument("--redis", metavar="URL", help="use this Redis instead of starting one")
    parser.add_argument(
        "--engine", metavar="CHECKOUT", default=str(ROOT), help="the engine's checkout (this one)"
    )
    parser.add_argument("--tasks", type=int, default=2000, help="trivial tasks per flow (2000)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per checkout and round (3)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over all checkouts (4)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.checkouts[0], args.redis, args.tasks, args.runs)
        return 0
    sys.path.insert(0, str(ROOT / "tools"))
    from bench_workers import own_redis  # a sibling script, as tools/ scripts import each other

    results: dict[str, list[dict[str, float]]] = {str(Path(c).resolve()): [] for c in args.checkouts}
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(own_redis())
        env = dict(os.environ, PYTHONPATH=args.engine)
        for _ in range(args.rounds):
            for checkout, rows in results.items():
                command = [sys.executable, __file__, "--child", checkout, "--redis", url]
                command += ["--tasks", str(args.tasks), "--runs", str(args.runs)]
                done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
                rows += [json.loads(line) for line in done.stdout.splitlines()]
    _print(results)
    return 0


def _print(results: dict[str, list[dict[str, float]]]) -> None:
    keys = list(next(iter(results.values()))[0])
    print(f"\nper request, min / median (tasks/s: best / median); CPU in µs; {os.cpu_count()} CPUs")
    print(f"{'':>12}" + "".join(f"{key:>16}" for key in keys))
    for checkout, rows in results.items():
        cells = []
        for key in keys:
            values = [row[key] for row in rows]
            first = max(values) if key == "tasks/s" else min(values)
            digits = (
                0
                if key == "tasks/s"
                else 1
                if key in ("cpu", "user", "sys", "reader", "pool", "writer")
                else 2
            )
            cells.append(f"{first:.{digits}f} / {statistics.median(values):.{digits}f}")
        print(f"{Path(checkout).name[:12]:>12}" + "".join(f"{cell:>16}" for cell in cells))


if __name__ == "__main__":
    sys.exit(main())
