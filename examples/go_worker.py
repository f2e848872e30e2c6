"""A CPU-heavy task on the Go worker, called from a Python flow.

Counting primes is pure CPU work: Python threads would take turns on one
core. The Go worker (``go_worker/``) serves Go functions as flowkit tasks
over Redis, with the same protocol as the Python worker. A Python flow
calls one through a *stub*: a task class whose ``worker_task_name`` names
the Go function and whose ``execute`` signature says what it requires.
The body never runs here.

The flow counts the primes below 2, 4 and 6 million on the Go worker (the
three requests are out at once: the worker runs them on goroutines). Every
task of a worker-based engine travels; this process only sends and stores.

Needs a Redis server, the ``workers`` extra and the Go worker built once::

    (cd go_worker && go build -trimpath -o flowkit-worker ./cmd/flowkit-worker)
    redis-server --port 6379 --save ''
    python examples/go_worker.py redis://127.0.0.1:6379/0

The Redis URL may come from ``FLOWKIT_EXAMPLE_REDIS`` instead, and the
binary from ``FLOWKIT_GO_WORKER`` (default: ``go_worker/flowkit-worker``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from flowkit import engines, task
from flowkit.patterns import unordered_flow

DEFAULT_BINARY = Path(__file__).resolve().parent.parent / "go_worker" / "flowkit-worker"
BUILD = "(cd go_worker && go build -trimpath -o flowkit-worker ./cmd/flowkit-worker)"
#: Both sides sign and check every message with this (in production: from a secret store).
SECRET = "example-secret"
#: Upper bound on every wait, so a broken setup fails instead of hanging.
PATIENCE = 30.0
LIMITS = [2_000_000, 4_000_000, 6_000_000]


class CountPrimes(task.Task):
    """How many primes are below ``limit``: runs on the Go worker (go_worker/tasks)."""

    worker_task_name = "flowkit_go_tasks.CountPrimes"
    worker_topic = "cpu"  # only workers of this topic are asked

    def execute(self, limit: int) -> int:  # type: ignore[empty-body]
        """Never runs in Python: the engine sends the name and ``limit`` to Go."""


def make_flow() -> unordered_flow.Flow:
    # Independent counts: the engine sends the three requests at once.
    counts = unordered_flow.Flow("primes")
    for limit in LIMITS:
        counts.add(CountPrimes(f"primes_{limit}", provides=f"primes_{limit}", inject={"limit": limit}))
    return counts


def main(url: str, binary: Path) -> None:
    key_prefix = f"flowkit-example-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FLOWKIT_WORKER_SECRET": SECRET}
    worker = subprocess.Popen(
        [str(binary), "--redis", url, "--topic", "cpu", "--key-prefix", key_prefix], env=env
    )
    try:
        engine = engines.load(
            make_flow(),
            engine="worker-based",
            url=url,
            key_prefix=key_prefix,
            secret=SECRET,
            # Wait (at most this long) for a worker offering every task before
            # running anything, instead of holding requests until one appears.
            worker_wait=PATIENCE,
        )
        print(f"Go worker started (process {worker.pid}); counting primes on it")
        engine.run()
        for limit in LIMITS:
            print(f"primes below {limit:,}: {engine.storage.fetch(f'primes_{limit}')}")
        print(f"final flow state: {engine.storage.get_flow_state()}")
    finally:
        worker.send_signal(signal.SIGTERM)  # graceful: finishes what it runs, then exits 0
        status = worker.wait(PATIENCE)
    print(f"Go worker stopped with exit status {status}")


if __name__ == "__main__":
    redis_url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FLOWKIT_EXAMPLE_REDIS")
    if not redis_url:
        print("go_worker.py needs a Redis server: start one (redis-server --port 6379 --save '')")
        print("and pass its URL: python examples/go_worker.py redis://127.0.0.1:6379/0")
        sys.exit(0)
    go_binary = Path(os.environ.get("FLOWKIT_GO_WORKER") or DEFAULT_BINARY)
    if not os.access(go_binary, os.X_OK):
        print(f"go_worker.py needs the Go worker, not built at {go_binary}: build it with")
        print(f"  {BUILD}")
        sys.exit(0)
    main(redis_url, go_binary)
