"""Remote workers: a flow whose tasks run in another process, over Redis.

The worker-based engine keeps the flow (its order, retries, storage) where
it is and sends each task as a request to a Redis stream. A *worker*, a
process of its own that could be on another machine, takes the request,
runs the task and sends the outcome back. Here the flow scales a photo in
two sizes; this script starts one worker process, runs the flow on the
engine, and stops the worker.

Both sides share a secret, so every message is signed (HMAC-SHA256) and a
message anybody else wrote to Redis is dropped: the production setting.
They also share a key prefix, so this example leaves other flowkit users of
the same Redis alone.

Needs a Redis server and the ``workers`` extra (``pip install -e
'.[workers]'``). Start one and pass its URL (or set ``FLOWKIT_EXAMPLE_REDIS``)::

    redis-server --port 6379 --save ''
    python examples/remote_workers.py redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from typing import Any

from flowkit import engines, task
from flowkit.patterns import linear_flow, unordered_flow

#: Both sides sign and check every message with this (in production: from a secret store).
SECRET = "example-secret"
#: Upper bound on every wait, so a broken setup fails instead of hanging.
PATIENCE = 30.0


# The tasks, served by the worker from this module (``--tasks remote_workers``).
# Each travels by its ``worker_task_name``: the engine sends that name and the
# arguments; the worker runs the class it registered under it.
def say(line: str) -> None:
    """Print ``line`` in one write: the worker runs both sizes at once, on two threads.

    ``print()`` writes the text and its line end separately, so two threads
    printing together could give both texts on one line, then two line ends.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Resize(task.Task):
    worker_task_name = "photos.Resize"

    def execute(self, photo: str, width: int) -> dict[str, Any]:
        say(f"  [worker] resized {photo} to {width} px")
        return {"path": f"{width}/{photo}", "pid": os.getpid()}


class Publish(task.Task):
    worker_task_name = "photos.Publish"

    def execute(self, small: dict[str, Any], large: dict[str, Any]) -> list[str]:
        say(f"  [worker] published {small['path']} and {large['path']}")
        return [small["path"], large["path"]]


def make_flow() -> linear_flow.Flow:
    # The two sizes do not depend on each other: the engine sends both at once.
    sizes = unordered_flow.Flow("sizes").add(
        Resize("small", provides="small", inject={"width": 320}),
        Resize("large", provides="large", inject={"width": 1280}),
    )
    return linear_flow.Flow("photo").add(sizes, Publish("publish", provides="published"))


def start_worker(url: str, key_prefix: str) -> subprocess.Popen[bytes]:
    """Start ``flowkit worker`` serving this file's task classes, as one would on a worker host."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = {
        **os.environ,
        "FLOWKIT_WORKER_SECRET": SECRET,  # the worker reads its secret from here
        "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable, "-m", "flowkit", "worker",
        "--redis", url, "--topic", "photos", "--key-prefix", key_prefix,
        "--tasks", "remote_workers:Resize,Publish",  # module:classes to offer
    ]  # fmt: skip
    return subprocess.Popen(command, env=env)


def main(url: str) -> None:
    key_prefix = f"flowkit-example-{uuid.uuid4().hex[:8]}"
    worker = start_worker(url, key_prefix)
    try:
        engine = engines.load(
            make_flow(),
            store={"photo": "cat.jpg"},
            engine="worker-based",
            url=url,
            topics=["photos"],
            key_prefix=key_prefix,
            secret=SECRET,
            # Wait (at most this long) for a worker offering every task before
            # running anything, instead of holding requests until one appears.
            worker_wait=PATIENCE,
        )
        print(f"engine in process {os.getpid()}, worker in process {worker.pid}")
        engine.run()
        results = engine.storage.fetch_all()
        pids = {results["small"]["pid"], results["large"]["pid"]}
        print(f"tasks ran in the worker process: {pids == {worker.pid}}")
        print(f"published: {', '.join(results['published'])}")
        print(f"final flow state: {engine.storage.get_flow_state()}")
    finally:
        # A stop signal lets the worker finish what it runs and leave cleanly.
        worker.send_signal(signal.SIGTERM)
        status = worker.wait(PATIENCE)
    print(f"worker stopped with exit status {status}")


if __name__ == "__main__":
    redis_url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FLOWKIT_EXAMPLE_REDIS")
    if not redis_url:
        print("remote_workers.py needs a Redis server: start one (redis-server --port 6379 --save '')")
        print("and pass its URL: python examples/remote_workers.py redis://127.0.0.1:6379/0")
        sys.exit(0)
    main(redis_url)
