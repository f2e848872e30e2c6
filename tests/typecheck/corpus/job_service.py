"""A TaskFlow-style worker service: jobs posted on a board, run by a conductor.

Type-checked with ``mypy --strict`` by tests/typing/test_user_code.py and never
run: every statement here is a correct program that a type checker must accept.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, assert_type

from flowkit import engines, exceptions, task
from flowkit.atom import Atom
from flowkit.conductors import backends as conductor_backends
from flowkit.conductors import base as conductor_base
from flowkit.conductors.backends import impl_blocking
from flowkit.flow import Flow
from flowkit.jobs import backends as job_backends
from flowkit.jobs import base as jobs_base
from flowkit.listeners import base as listeners_base
from flowkit.listeners import logging as logging_listeners
from flowkit.patterns import linear_flow
from flowkit.persistence import backends as persistence_backends
from flowkit.persistence import base as persistence_base
from flowkit.persistence import models

LOG = logging.getLogger(__name__)


class Resize(task.Task):
    """One step of the job's flow."""

    def execute(self, instance_id: str, flavor: str) -> str:
        return f"{instance_id}:{flavor}"


def resize_flow(flavor: str) -> linear_flow.Flow:
    """The factory a conductor calls (by its dotted name) to rebuild the flow."""
    return linear_flow.Flow("resize").add(Resize(inject={"flavor": flavor}))


def post_resize(instance_id: str) -> jobs_base.Job:
    """Save a logbook and post a job for it, as a TaskFlow API service does."""
    persistence = persistence_backends.fetch({"connection": "sqlite:////tmp/resize.db"})
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.upgrade()
    book = models.LogBook("resize-book")
    flow_detail = models.FlowDetail("resize", uuid=instance_id)
    book.add(flow_detail)
    engines.save_factory_details(flow_detail, resize_flow, ["m1.small"], {}, backend=persistence)
    with contextlib.closing(persistence.get_connection()) as conn:
        conn.save_logbook(book)
    conf: dict[str, Any] = {"board": "redis", "host": "127.0.0.1", "port": 6379}
    with job_backends.backend("resize-board", conf, persistence=persistence) as board:
        job = board.post(
            "resize", book=book, details={"store": {"instance_id": instance_id}}, priority="HIGH"
        )
        job.wait(timeout=1.0)
        return job


def work_one(board: jobs_base.JobBoard, who: str) -> bool:
    """Claim, run and consume the first unclaimed job, as a hand-written worker does."""
    for job in board.iterjobs(only_unclaimed=True, ensure_fresh=True):
        try:
            claim = board.claim(job, who, expiry=30.0)
        except (exceptions.UnclaimableJob, exceptions.NotFound):
            continue
        try:
            details: dict[str, Any] = job.details
            store: dict[str, Any] = details.get("store", {})
            book = job.book
            if book is None:
                raise exceptions.NotFound(f"job {job.uuid} has no logbook")
            flow_detail = next(iter(book))
            engine = engines.load_from_detail(flow_detail, store=store, backend=board.conf.get("persistence"))
            engine.run()
        except Exception:
            board.abandon(job, who, claim=claim)
            raise
        board.consume(job, who, claim=claim)
        return True
    return False


def trash_stale(board: jobs_base.JobBoard, who: str) -> int:
    """Trash every job posted with low priority."""
    gone = 0
    for job in board.iterjobs():
        if job.priority is jobs_base.JobPriority.LOW and job.state == "UNCLAIMED":
            board.claim(job, who)
            board.trash(job, who, reason="stale")
            gone += 1
    return gone


class DynamicLoggingConductor(impl_blocking.BlockingConductor):
    """A conductor that logs every job's flow, as Octavia's does."""

    def _listeners_from_job(
        self, job: jobs_base.Job, engine: engines.Engine
    ) -> list[listeners_base.Listener]:
        found: list[listeners_base.Listener] = super()._listeners_from_job(job, engine)
        found.append(logging_listeners.DynamicLoggingListener(engine, log=LOG))
        return found


def run_logging_conductor(board: jobs_base.JobBoard) -> None:
    """The subclass made directly, with TaskFlow's keyword options."""
    persistence = persistence_backends.fetch({"connection": "memory://"})
    conductor = DynamicLoggingConductor(
        "octavia-conductor", board, persistence=persistence, engine="parallel", wait_timeout=0.5
    )
    conductor.run(max_dispatches=1)


def run_conductor(stop: threading.Event) -> None:
    """A conductor over a ZooKeeper board, stopped from another thread."""
    persistence = persistence_backends.fetch({"connection": "zookeeper://127.0.0.1:2181/resize"})
    board = job_backends.fetch(
        "resize-board", {"board": "zookeeper", "hosts": "127.0.0.1:2181"}, persistence=persistence
    )
    board.connect()
    conductor = conductor_backends.fetch(
        "blocking",
        "conductor-1",
        board,
        persistence=persistence,
        engine="parallel",
        engine_options={"max_workers": 2},
    )
    board.register_entity(conductor.conductor)
    worker = threading.Thread(target=conductor.run, kwargs={"max_dispatches": 10})
    worker.start()
    stop.wait()
    conductor.stop()
    stopped: bool = conductor.wait(timeout=5.0)
    if not stopped:
        raise RuntimeError("conductor did not stop")
    conductor.close()
    board.close()


def what_the_checker_sees(board: jobs_base.JobBoard, job: jobs_base.Job) -> None:
    """The types flowkit gives back are its own, not ``Any``."""
    assert_type(job_backends.fetch("b", "memory://"), jobs_base.JobBoard)
    assert_type(persistence_backends.fetch("memory://"), persistence_base.Backend)
    assert_type(conductor_backends.fetch("blocking", "c", board), conductor_base.Conductor)
    assert_type(board.claim(job, "me"), jobs_base.Claim)
    assert_type(board.post("j"), jobs_base.Job)
    assert_type(job.book, models.LogBook | None)
    assert_type(job.details, dict[str, Any])
    assert_type(engines.load_from_factory(resize_flow, ["m1.small"]), engines.Engine)
    assert_type(engines.flow_from_detail(models.FlowDetail("f", uuid="u")), Atom | Flow)
    engine = engines.load(resize_flow("m1.small"), backend={"connection": "memory://"})
    assert_type(engine.storage.backend, persistence_base.Backend)
    assert_type(jobs_base.JobPriority.reorder(("HIGH", "a")), str)
    assert_type(jobs_base.JobPriority.reorder(("LOW", 1), (jobs_base.JobPriority.HIGH, 2)), tuple[int, ...])
