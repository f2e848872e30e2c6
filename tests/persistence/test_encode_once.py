"""A result is JSON-encoded once on its way to a SQL database, not twice.

The engine encodes a result as it arrives (so an unstorable one fails its own
atom: ``Backend.check_storable``) and the SQL backend's write of that result a
moment later used to encode it again: the same text, twice the cost. The check's
text now rides along to that one write (``models.attach_encoded``). These tests
count encodings where the encoder itself calls out (its ``default`` hook, which
turns a model into JSON) on a real SQLite file and on the test session's
PostgreSQL, check the stored text is the text ``encode_json`` makes (what every
earlier release stored and reads), and check the text is never written in
place of a value that changed since it was made.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from flowkit import engines, states, task
from flowkit import exceptions as exc
from flowkit.patterns import linear_flow
from flowkit.persistence import backends, models
from flowkit.persistence.backends.impl_sqlalchemy import SQLAlchemyBackend
from flowkit.persistence.backends.sqlalchemy.tables import atomdetails
from flowkit.persistence.base import FenceRefused, WriteFence, encode_json
from flowkit.types.failure import Failure


class Probe:
    """A value the encoder cannot write itself: it asks ``model_dump``, which counts the asks."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.dumps = 0

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        self.dumps += 1
        return {"probe": self.label}


def _nested(probe: Probe) -> dict[str, Any]:
    """A result as tasks return them: nested containers of strings and numbers (about 8 KB)."""
    return {
        "rows": [{"id": i, "name": f"row-{i}", "tags": ["a", "b", "c"], "score": i / 7} for i in range(100)],
        "summary": {"count": 100, "ok": True, "note": None},
        "probe": probe,
    }


@contextlib.contextmanager
def _backend(url: str) -> Iterator[SQLAlchemyBackend]:
    backend = backends.fetch({"connection": url})
    assert isinstance(backend, SQLAlchemyBackend)
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()
        yield backend
    finally:
        backend.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/flows.db"
    return str(request.getfixturevalue("postgresql_db_url"))


def _stored(backend: SQLAlchemyBackend, name: str) -> dict[str, Any]:
    """The atomdetails row of atom ``name``, as the database holds it."""
    with backend.engine.connect() as conn:
        row = conn.execute(select(atomdetails).where(atomdetails.c.name == name)).one()
    return dict(row._mapping)


def _load(backend: SQLAlchemyBackend, flow: Any) -> Any:
    """An engine running ``flow`` saved to ``backend`` under a new logbook."""
    return engines.load(flow, backend=backend, book=models.LogBook("encode-once"))


class Returns(task.Task):
    def __init__(self, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value = value

    def execute(self) -> Any:
        return self.value


def test_a_result_is_encoded_once_for_its_durable_write(url: str) -> None:
    probe = Probe("result")
    value = _nested(probe)
    with _backend(url) as backend:
        _load(backend, linear_flow.Flow("f").add(Returns(value, name="made", provides="made"))).run()
        row = _stored(backend, "made")
    # Before: once by the check as the result arrived, once more by the write.
    assert probe.dumps == 1
    # The stored text is the one encoding every release writes and reads.
    assert row["results"] == encode_json(value)
    assert row["state"] == states.SUCCESS
    assert json.loads(row["results"])["probe"] == {"probe": "result"}


class Undoes(task.Task):
    def __init__(self, undo: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.undo = undo

    def execute(self) -> int:
        return 1

    def revert(self, *args: Any, **kwargs: Any) -> Any:
        return self.undo


class Fails(task.Task):
    def execute(self) -> None:
        raise RuntimeError("fails on purpose")


def test_a_revert_result_is_encoded_once_for_its_durable_write(url: str) -> None:
    probe = Probe("revert")
    undo = _nested(probe)
    with _backend(url) as backend:
        flow = linear_flow.Flow("f").add(Undoes(undo, name="undone"), Fails(name="fails"))
        with pytest.raises(RuntimeError, match="fails on purpose"):
            _load(backend, flow).run()
        row = _stored(backend, "undone")
    assert probe.dumps == 1
    assert row["state"] == states.REVERTED
    assert row["revert_results"] == encode_json(undo)


class Appends(task.Task):
    """Changes the list it is given in place, then fails: its provider is reverted."""

    def execute(self, made: list[str]) -> None:
        made.append("appended later")
        raise RuntimeError("fails after appending")


def test_a_result_changed_in_place_later_is_written_as_changed(url: str) -> None:
    # The check's text serves the write right after it and no other: the
    # provider's REVERTING and REVERTED rows hold the list as it is by then.
    value = ["first"]
    with _backend(url) as backend:
        flow = linear_flow.Flow("f").add(
            Returns(value, name="made", provides="made"), Appends(name="appends")
        )
        with pytest.raises(RuntimeError, match="fails after appending"):
            _load(backend, flow).run()
        row = _stored(backend, "made")
    assert row["state"] == states.REVERTED
    assert json.loads(row["results"]) == ["first", "appended later"]


def test_a_listener_changing_a_result_in_place_does_not_change_what_was_written(url: str) -> None:
    # As in TaskFlow, a user's listener hears of a SUCCESS once it is written:
    # the write held the result as it arrived, which is the text the check made.
    value = {"count": 1, "nested": [1, 2]}
    with _backend(url) as backend:
        engine = _load(backend, linear_flow.Flow("f").add(Returns(value, name="made", provides="made")))

        def on_success(state: str, details: dict[str, Any]) -> None:
            if details.get("task_name") == "made":
                details["result"]["count"] = 2

        engine.atom_notifier.register(states.SUCCESS, on_success)
        engine.run()
        row = _stored(backend, "made")
    assert json.loads(row["results"]) == {"count": 1, "nested": [1, 2]}


def test_a_result_saved_again_after_a_change_in_place_is_written_as_changed(url: str) -> None:
    # Between a check and the write that uses its text, the same object,
    # changed in place, is saved through storage: the write holds the change.
    value = {"count": 1, "nested": [1, 2]}
    with _backend(url) as backend:
        engine = _load(backend, linear_flow.Flow("f").add(Returns(value, name="made", provides="made")))
        engine.run()
        run = engine.storage.run_state
        with run.batch():
            run.remember_encoded("made", "results", value, encode_json(value))
            value["count"] = 2
            engine.storage.save("made", value)
        row = _stored(backend, "made")
    assert json.loads(row["results"]) == {"count": 2, "nested": [1, 2]}


def test_an_unstorable_result_still_fails_its_own_atom_naming_it(url: str) -> None:
    with _backend(url) as backend:
        flow = linear_flow.Flow("f").add(Returns({"when": object()}, name="opaque"))
        with pytest.raises(exc.InvalidFormat, match="result of atom 'opaque' cannot be stored as JSON"):
            _load(backend, flow).run()
        row = _stored(backend, "opaque")
    assert row["results"] is None
    assert row["state"] == states.REVERTED


def test_an_attached_text_is_used_only_for_the_object_it_was_made_of() -> None:
    detail = models.TaskDetail("t", "u-1")
    value = {"a": [1, 2]}
    detail.results = value
    models.attach_encoded(detail, {"results": models.Encoded(value, encode_json(value))})
    assert models.encoded_text(detail, "results") == encode_json(value)
    assert models.encoded_text(detail, "revert_results") is None
    detail.results = {"a": [1, 2]}  # an equal value, but another object
    assert models.encoded_text(detail, "results") is None
    # Not a field of the detail: copies and records do not carry it.
    detail.results = value
    assert models.encoded_text(detail.copy(), "results") is None
    assert "_encoded" not in detail.to_dict()
    models.attach_encoded(detail, None)
    assert models.encoded_text(detail, "results") is None


class CountedFailure(Failure):
    """A failure that counts how often its record is made (each make walks its causes)."""

    __slots__ = ()
    made: ClassVar[list[str]] = []

    def to_dict(self, include_args: bool = True) -> dict[str, Any]:
        CountedFailure.made.append(self.exception_str)
        return super().to_dict(include_args)


def _counted(message: str) -> CountedFailure:
    return CountedFailure(
        exception_str=message, traceback_str="  File x\n", exc_type_names=["RuntimeError", "Exception"]
    )


def test_a_retry_rows_failures_are_marshalled_once_per_write(url: str) -> None:
    CountedFailure.made.clear()
    book = models.LogBook("retry-row")
    flow = models.FlowDetail("f", "f-uuid-1")
    book.add(flow)
    retry_detail = models.RetryDetail("r", "r-uuid-1")
    retry_detail.state = states.FAILURE
    retry_detail.results = [(1, {"t": _counted("attempt one")})]
    retry_detail.failure = _counted("retry failed")
    retry_detail.revert_failure = _counted("revert failed")
    flow.add(retry_detail)
    with _backend(url) as backend, contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
        CountedFailure.made.clear()
        conn.save_flow_progress(flow, [retry_detail], False)
        row = _stored(backend, "r")
    # Before: the row's own failures twice each (once for the history's record, once for the column).
    assert sorted(CountedFailure.made) == ["attempt one", "retry failed", "revert failed"]
    assert row["failure"] == encode_json(retry_detail.failure.to_dict())
    assert row["revert_failure"] == encode_json(retry_detail.revert_failure.to_dict())
    assert row["results"] == encode_json(retry_detail.to_dict()["results"])


def test_a_fenced_write_stores_the_attached_text_and_is_still_refused_without_the_fence(url: str) -> None:
    # A conductor's write goes through save_flow_progress_fenced: the text the
    # engine attached is what it stores (a marker text here, to tell it apart
    # from a fresh encoding), and a write under a stale fence stores nothing.
    book = models.LogBook("fenced")
    flow = models.FlowDetail("f", "f-uuid-2")
    book.add(flow)
    detail = models.TaskDetail("t", "t-uuid-2")
    flow.add(detail)
    value = {"rows": [1, 2, 3]}
    with _backend(url) as backend, contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
        conn.fence_flow(flow.uuid, WriteFence("job-1", 1))
        conn.fence_flow(flow.uuid, WriteFence("job-1", 2))
        detail.state, detail.results = states.SUCCESS, value
        models.attach_encoded(detail, {"results": models.Encoded(value, '{"attached":true}')})
        with pytest.raises(FenceRefused, match="job-1"):
            conn.save_flow_progress_fenced(flow, [detail], False, WriteFence("job-1", 1))
        assert _stored(backend, "t")["results"] is None
        conn.save_flow_progress_fenced(flow, [detail], False, WriteFence("job-1", 2))
        assert _stored(backend, "t")["results"] == '{"attached":true}'
