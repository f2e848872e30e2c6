#!/usr/bin/env python3
"""Time the worker-based engine's sends under ``max_in_flight``, with and without held requests.

Usage (from anywhere; the checkout's ``flowkit`` is put first on the path)::

    python tools/bench_send_window.py 5000          # 5,000 trivial tasks, max_in_flight=8
    python tools/bench_send_window.py 5000 1000     # and 1,000 tasks no worker offers (held)

One process per run: an engine and a ``Worker`` on the memory transport. The
held requests never time out (the engine's monotonic clock stands still). It
prints the time until the offered tasks are done, how many times the driver's
``_send`` ran and the time spent in it, in all and per call: a send that walked
every request held would grow with the held ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flowkit import engines, task  # noqa: E402 - after the path is set
from flowkit.engines.worker_based import _driver  # noqa: E402
from flowkit.engines.worker_based.worker import Worker  # noqa: E402
from flowkit.patterns import unordered_flow  # noqa: E402
from tools._bench_worker_tasks import Noop  # noqa: E402

WINDOW = 8
_spent = [0.0, 0]
_send = _driver.RedisDriver._send


def _timed_send(self: _driver.RedisDriver) -> None:
    began = time.perf_counter()
    try:
        _send(self)
    finally:
        _spent[0] += time.perf_counter() - began
        _spent[1] += 1


class Lonely(task.Task):
    """A task no worker offers: its requests are held."""

    def execute(self, value: Any) -> Any:
        raise AssertionError("no worker offers it")


class StillClock:
    """Monotonic time stands still, so the engine never times the held requests out."""

    def time(self) -> float:
        return time.time()  # the worker checks deadlines on the real clock

    def monotonic(self) -> float:
        return 1000.0

    def sleep(self, seconds: float) -> None:
        pass


def main(offered: int, held: int) -> None:
    _driver.RedisDriver._send = _timed_send  # type: ignore[method-assign]
    exchange, topic = f"x-{uuid.uuid4().hex[:6]}", "bench"
    worker = Worker(exchange, topic, [Noop], threads_count=4, transport="memory")
    worker.start()
    worker.wait()
    flow = unordered_flow.Flow("fan").add(
        *(Lonely(name=f"h{i}", inject={"value": i}) for i in range(held)),
        *(Noop(name=f"n{i}", provides=f"r{i}", inject={"value": i}) for i in range(offered)),
    )
    engine = engines.load(
        flow, engine="worker-based", transport="memory", exchange=exchange, topics=[topic],
        max_in_flight=WINDOW, clock=StillClock(),
    )  # fmt: skip
    done = threading.Event()
    successes = [0]

    def on_state(state: str, details: dict[str, Any]) -> None:
        if state == "SUCCESS":
            successes[0] += 1
            if successes[0] == offered:
                done.set()

    engine.atom_notifier.register(engine.atom_notifier.ANY, on_state)
    began = time.perf_counter()
    threading.Thread(target=engine.run, daemon=True).start()
    if not done.wait(600):
        raise SystemExit(f"the {offered} offered tasks were not done in 600 s")
    wall = time.perf_counter() - began
    total, calls = _spent
    print(
        f"offered={offered} held={held} max_in_flight={WINDOW}: {wall:.2f} s to finish the offered tasks;"
        f" _send {calls} calls, {total * 1000:.1f} ms in all, {total / max(calls, 1) * 1e6:.1f} us per call",
        flush=True,
    )
    os._exit(0)  # the held requests would wait for ever: no clean shutdown to time


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "offered", type=int, nargs="?", default=5000, help="tasks a worker offers (default 5000)"
    )
    parser.add_argument(
        "held", type=int, nargs="?", default=0, help="tasks no worker offers, held (default 0)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    # argparse: "--help" was read as the number of tasks and failed with a ValueError.
    args = _arguments()
    main(args.offered, args.held)
