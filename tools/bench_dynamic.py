#!/usr/bin/env python3
"""What a dynamic fan-out costs: spawned tasks against a static flow of the same shape.

Usage (the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_dynamic.py                 # 10,000 tasks, best of 3, serial and parallel
    python tools/bench_dynamic.py -n 1000 --repeat 5 --json out.json

Both shapes are ``linear(head, unordered(n trivial tasks), tail)`` run in memory.
*static* builds the unordered flow up front; *dynamic* lets ``head`` return it
with :func:`flowkit.dynamic.subflow` (built, compiled and spliced while the
flow runs). Prints the best time per task of each (build+load+run) and the
peak memory each adds (CPU time too: on a busy machine it moves less than
the wall clock), measured in a fresh child process per shape as its peak
resident set (``VmHWM``) over the idle interpreter's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flowkit import dynamic, engines, task  # noqa: E402
from flowkit.patterns import linear_flow, unordered_flow  # noqa: E402


class Noop(task.Task):
    def execute(self) -> int:
        return 1


class Fan(task.Task):
    """Spawns ``n`` Noop tasks, unordered."""

    def __init__(self, n: int) -> None:
        super().__init__("head")
        self.n = n

    def execute(self) -> Any:
        return dynamic.subflow(unordered_flow.Flow("fan").add(*(Noop(f"t{i}") for i in range(self.n))))


def run_shape(shape: str, n: int, kind: str) -> tuple[float, float]:
    """Build, load and run one shape; (wall, CPU) seconds taken."""
    started, cpu = time.perf_counter(), time.process_time()
    if shape == "static":
        body = unordered_flow.Flow("fan").add(*(Noop(f"t{i}") for i in range(n)))
        flow = linear_flow.Flow("static").add(Noop("head"), body, Noop("tail"))
    else:
        flow = linear_flow.Flow("dynamic").add(Fan(n), Noop("tail"))
    engine = engines.load(flow, engine=kind)
    engine.run()
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    if shape == "dynamic":
        assert len(engine.storage.get("head")) == n
    return elapsed


def peak_mb(shape: str, n: int, kind: str) -> float:
    """Peak RSS in MB of a child process running one shape once (0 for the idle interpreter)."""
    # VmHWM (tools/_peak_memory.py says why not getrusage's ru_maxrss).
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[1:];"
        "import tools.bench_dynamic as b;"
        "shape, n, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3];"
        "shape != 'idle' and b.run_shape(shape, n, kind);"
        "from tools._peak_memory import peak_rss_kb;"
        "print(peak_rss_kb() / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), shape, str(n), kind],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="tasks in the fan-out")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default="serial,parallel")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures: dict[str, Any] = {"n": args.n}
    idle = peak_mb("idle", 0, "serial")
    print(f"fan-out of {args.n} tasks, best of {args.repeat}; idle interpreter {idle:.0f} MB")
    print(f"{'engine':10} {'shape':8} {'us/task':>9} {'CPU us':>9} {'peak MB':>8} {'KB/task':>8}")
    for kind in args.engines.split(","):
        per: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for shape in ("static", "dynamic"):
            runs = [run_shape(shape, args.n, kind) for _ in range(args.repeat)]
            mem = peak_mb(shape, args.n, kind) - idle
            per[shape] = min(wall for wall, _cpu in runs) / args.n * 1e6
            cpu[shape] = min(used for _wall, used in runs) / args.n * 1e6
            figures[f"{kind}-{shape}"] = {
                "us_per_task": per[shape],
                "cpu_us_per_task": cpu[shape],
                "peak_mb": mem,
            }
            print(
                f"{kind:10} {shape:8} {per[shape]:9.2f} {cpu[shape]:9.2f} {mem:8.1f} "
                f"{mem * 1024 / args.n:8.2f}"
            )
        ratio = per["dynamic"] / per["static"]
        figures[f"{kind}-ratio"] = ratio
        print(f"{kind:10} dynamic/static: time {ratio:.2f}x, CPU time {cpu['dynamic'] / cpu['static']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
