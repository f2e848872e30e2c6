"""A ZooKeeper write too big for one request says so, on the session's real ZooKeeper.

ZooKeeper refuses a request over its ``jute.maxbuffer`` (1 MB by default) by
dropping the client's connection; kazoo then raises ``ConnectionLoss`` with no
text, and the message quoting it ended in a bare colon. A flow of 2,500 new
atoms saved at once is a transaction of about 1.3 MB, over the limit for
flowkit and for TaskFlow alike (each writes all of a save's atoms in one
transaction).
"""

from __future__ import annotations

import uuid

import pytest

from flowkit import exceptions as exc
from flowkit._utils.text import error_text
from flowkit.persistence import backends
from flowkit.persistence.models import FlowDetail, LogBook, TaskDetail
from tests import services

# Atoms whose one-transaction save is over 1 MB (about 525 bytes each).
_TOO_MANY_ATOMS = 2_500


def test_error_text_names_the_class_of_an_exception_without_text() -> None:
    kazoo_exceptions = services.require_module("kazoo.exceptions", "kazoo")
    assert error_text(kazoo_exceptions.ConnectionLoss()) == "ConnectionLoss"
    assert error_text(ValueError("bad port")) == "bad port"


def test_a_save_over_jute_maxbuffer_says_what_was_refused_and_why(zookeeper_path_url: str) -> None:
    services.require_module("kazoo", "kazoo")
    backend = backends.fetch(zookeeper_path_url)
    try:
        conn = backend.get_connection()
        conn.upgrade()
        book = LogBook("book")
        flow = FlowDetail("big", str(uuid.uuid4()))
        book.add(flow)
        conn.save_logbook(book)
        for number in range(_TOO_MANY_ATOMS):
            flow.add(TaskDetail(f"task-{number}", str(uuid.uuid4())))
        with pytest.raises(exc.StorageFailure) as caught:
            conn.update_flow_details(flow)
        message = str(caught.value)
        assert message.startswith(f"update_flow_details of {flow.uuid} failed on zookeeper://")
        assert not message.rstrip().endswith(":")
        assert f"{2 * _TOO_MANY_ATOMS + 3:,} znode operations" in message  # atoms, their links, the flow's
        assert "bytes" in message
        assert "jute.maxbuffer, 1 MB" in message
        lost = caught.value.__cause__
        assert lost is not None and lost.size > 1_048_575  # type: ignore[attr-defined]
        # Nothing of the refused transaction was written, and the store serves on.
        assert list(conn.get_flow_details(flow.uuid)) == []
    finally:
        backend.close()


def test_an_engine_preparing_a_flow_too_big_for_one_request_says_why(zookeeper_path_url: str) -> None:
    services.require_module("kazoo", "kazoo")
    from flowkit import engines
    from flowkit.patterns import linear_flow
    from flowkit.task import FunctorTask

    flow = linear_flow.Flow("big").add(
        *(FunctorTask(lambda: None, name=f"task-{number}") for number in range(_TOO_MANY_ATOMS))
    )
    backend = backends.fetch(zookeeper_path_url)
    try:
        backend.get_connection().upgrade()
        engine = engines.load(flow, backend=backend)
        with pytest.raises(exc.StorageFailure) as caught:
            engine.run()
        message = str(caught.value)
        assert "failed on zookeeper://" in message
        assert "jute.maxbuffer, 1 MB" in message
        assert not message.rstrip().endswith(":")
    finally:
        backend.close()
