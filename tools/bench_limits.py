"""What per-task timeouts and concurrency limits cost, per task.

    python tools/bench_limits.py             # 1,000 tasks, best of 7
    python tools/bench_limits.py --n 5000 --repeat 3

Rows (best of ``--repeat`` runs, microseconds per task, load + run of a flow
built beforehand):

* ``serial linear-N``: a chain of trivial tasks on the serial engine, without a
  timeout and with ``timeout=60`` on every task (each timed call then goes to a
  helper thread and back: the serial engine cannot stop a call it runs itself).
* ``parallel independent-N x8``: N trivial independent tasks on 8 threads,
  without and with a timeout on every task (one timer entry per call).
* ``parallel ... keyed``: the same tasks sharing a ``concurrency_key`` whose
  limit is the pool size (8): what consulting the limiter costs when it never
  holds anything back; and with a limit of 2, where tasks wait for slots.

The difference between a row and its plain twin is the cost of the option. The
plain rows are the hot paths of ``tools/bench.py``: they must not move when
these features are present but unused (compare ``tools/bench.py --quick``
before and after).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from _best_time import best

from flowkit import engines, task
from flowkit.patterns import linear_flow, unordered_flow


class Noop(task.Task):
    def execute(self) -> None:
        return None


def linear(n: int, **options: Any) -> linear_flow.Flow:
    return linear_flow.Flow("chain").add(*[Noop(f"t{i}", **options) for i in range(n)])


def independent(n: int, **options: Any) -> unordered_flow.Flow:
    return unordered_flow.Flow("fan").add(*[Noop(f"t{i}", **options) for i in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000, help="tasks per flow (default 1000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per row, best kept (default 7)")
    args = parser.parse_args()
    n, repeat = args.n, args.repeat
    plain_chain, timed_chain = linear(n), linear(n, timeout=60)
    plain_fan, timed_fan = independent(n), independent(n, timeout=60)
    keyed_fan = independent(n, concurrency_key="k")
    parallel: dict[str, Any] = {"engine": "parallel", "max_workers": 8}
    rows: list[tuple[str, Callable[[], Any]]] = [
        (f"serial linear-{n}", lambda: engines.run(plain_chain)),
        (f"serial linear-{n} timeout=60", lambda: engines.run(timed_chain)),
        (f"serial linear-{n} default_timeout=60", lambda: engines.run(plain_chain, default_timeout=60)),
        (f"parallel independent-{n} x8", lambda: engines.run(plain_fan, **parallel)),
        (f"parallel independent-{n} x8 timeout=60", lambda: engines.run(timed_fan, **parallel)),
        (
            f"parallel independent-{n} x8 keyed, limit 8",
            lambda: engines.run(keyed_fan, concurrency_limits={"k": 8}, **parallel),
        ),
        (
            f"parallel independent-{n} x8 keyed, limit 2",
            lambda: engines.run(keyed_fan, concurrency_limits={"k": 2}, **parallel),
        ),
    ]
    print(f"{'workload':<48} {'us/task':>9}")
    for name, fn in rows:
        fn()  # warm up: threads started, caches filled
        print(f"{name:<48} {best(fn, repeat) / n * 1e6:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
