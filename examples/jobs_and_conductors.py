"""Jobs and conductors: post a flow as a job, and a second conductor takes over.

A web shop does not run its slow work in the request that asked for it. It
*posts a job* on a jobboard: a name, a logbook saved in the persistence
backend (the flow to run and its inputs) and some details. *Conductors*,
on any number of hosts, claim jobs from the board, run their flows and
consume them when done.

Here conductor ``host-a`` claims the job and starts the flow, then freezes
in the middle of a task, as a host does when it dies or hangs: it stops
answering and its claim runs out (``claim_expiry``). Conductor ``host-b``
then claims the job and carries on from what ``host-a`` saved: the step
that had finished is not run again, the step that was cut off is. When
``host-a`` wakes up, the board's fence refuses its writes: two conductors
never both finish the same flow.

The board is in memory by default, in this process. Give a Redis,
ZooKeeper or etcd URL to use a real board instead (each conductor then
has a connection of its own, as on two hosts)::

    python examples/jobs_and_conductors.py
    python examples/jobs_and_conductors.py redis://127.0.0.1:6379/0
    FLOWKIT_EXAMPLE_BOARD=zookeeper://127.0.0.1:2181/shop python examples/jobs_and_conductors.py
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from flowkit import conductors, engines, task
from flowkit.jobs import backends as job_backends
from flowkit.jobs.base import JobBoard
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models

#: Seconds a claim lasts unless renewed: how long host-b waits for the frozen host-a.
CLAIM_EXPIRY = 1.0
#: Upper bound on every wait below, so a broken run fails instead of hanging.
PATIENCE = 30.0

# host-a's "death": its resize task blocks on this until the end of the story.
host_a_frozen = threading.Event()
host_a_wakes = threading.Event()


def who() -> str:
    """The conductor running the calling task (each runs on a thread named after it)."""
    return threading.current_thread().name


class Download(task.Task):
    default_provides = "original"

    def execute(self, photo: str) -> str:
        print(f"  [{who()}] downloaded {photo}", flush=True)
        return f"originals/{photo}"


class Resize(task.Task):
    default_provides = "thumbnail"

    def execute(self, original: str) -> str:
        print(f"  [{who()}] resizing {original}...", flush=True)
        if who() == "host-a":
            host_a_frozen.set()  # tell the story it may go on
            host_a_wakes.wait(PATIENCE)  # a dead host: nothing happens here any more
            return "never-stored"
        return original.replace("originals/", "thumbs/")


class Publish(task.Task):
    def execute(self, thumbnail: str) -> None:
        print(f"  [{who()}] published {thumbnail}", flush=True)


def make_flow() -> linear_flow.Flow:
    """The flow factory: a conductor rebuilds the job's flow by calling it by name."""
    return linear_flow.Flow("thumbnail").add(Download("download"), Resize("resize"), Publish("publish"))


def post_job(board: JobBoard, persistence: Any, photo: str) -> models.FlowDetail:
    """Save what to run in the persistence backend, then post it as a job."""
    book = models.LogBook(f"thumbnail-{photo}")
    flow_detail = models.FlowDetail("thumbnail", str(uuid.uuid4()))
    book.add(flow_detail)
    # Record the factory (by its name) that rebuilds the flow on any conductor.
    engines.save_factory_details(flow_detail, make_flow, [], {})
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.save_logbook(book)
    job = board.post(f"thumbnail-{photo}", book=book, details={"store": {"photo": photo}})
    print(f"posted job {job.name!r}")
    return flow_detail


def conductor_on(name: str, board: JobBoard, persistence: Any) -> Any:
    """A conductor that runs one job at a time, each claim lasting CLAIM_EXPIRY seconds."""
    conductor = conductors.backends.fetch(
        "blocking",
        name,
        board,
        persistence=persistence,
        engine="serial",
        claim_expiry=CLAIM_EXPIRY,
        wait_timeout=0.05,  # how long an idle conductor waits before looking again
    )
    for event in ("job_consumed", "job_abandoned", "job_lost"):
        conductor.notifier.register(event, lambda event, details, name=name: print(f"{name}: {event}"))
    return conductor


def run_in_thread(name: str, conductor: Any) -> threading.Thread:
    """Run ``conductor`` for one job on a thread named after it."""
    thread = threading.Thread(target=conductor.run, kwargs={"max_dispatches": 1}, name=name, daemon=True)
    thread.start()
    return thread


def open_board(url: str | None, persistence: Any, shared: JobBoard | None = None) -> JobBoard:
    """A board connection; the memory board is one object shared by both conductors."""
    if shared is not None and url is None:
        return shared
    board = job_backends.fetch("photos", url or "memory", persistence=persistence)
    board.connect()
    return board


def main(url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        persistence = backends.fetch(f"sqlite:///{Path(tmp) / 'flows.db'}")
        with contextlib.closing(persistence.get_connection()) as conn:
            conn.upgrade()
        board_a = open_board(url, persistence)
        board_b = open_board(url, persistence, shared=board_a)
        # The kind only: a URL may hold a password, which has no business in a log.
        kind = url.partition("://")[0] if url else "memory"
        print(f"board: {kind}" + (" (this process only)" if url is None else ", a connection per conductor"))
        flow_detail = post_job(board_a, persistence, "cat.jpg")

        host_a = run_in_thread("host-a", conductor_on("host-a", board_a, persistence))
        if not host_a_frozen.wait(PATIENCE):
            raise SystemExit("host-a never started the job")
        print("host-a froze mid-task; its claim runs out, nobody renews it")
        if url is not None:
            board_a.close()  # a dead host's connection to the board goes too

        host_b = run_in_thread("host-b", conductor_on("host-b", board_b, persistence))
        host_b.join(PATIENCE)
        if host_b.is_alive():
            raise SystemExit("host-b did not finish the job")

        host_a_wakes.set()  # host-a comes back: its next write is fenced off
        host_a.join(PATIENCE)
        print("host-a woke up: the board refused its write, so it gave the job up")

        with contextlib.closing(persistence.get_connection()) as conn:
            stored = conn.get_flow_details(flow_detail.uuid)
        print(f"final flow state: {stored.state}")
        print(f"stored thumbnail: {next(ad.results for ad in stored if ad.name == 'resize')}")
        print(f"jobs left on the board: {board_b.job_count}")
        board_b.close()
        persistence.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FLOWKIT_EXAMPLE_BOARD"))
