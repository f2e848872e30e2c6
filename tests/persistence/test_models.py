"""Unit tests for the persistence records (flowkit.persistence.models)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit import states
from flowkit.persistence import models
from flowkit.persistence.models import FlowDetail, LogBook, RetryDetail, TaskDetail
from flowkit.types.failure import Failure


def _failure(message: str = "boom") -> Failure:
    try:
        raise RuntimeError(message)
    except RuntimeError:
        return Failure()


def _uuid() -> str:
    return str(uuid.uuid4())


# -- LogBook -------------------------------------------------------------------


def test_logbook_makes_a_uuid4_when_none_given() -> None:
    book = LogBook("b")
    assert uuid.UUID(book.uuid).version == 4
    assert LogBook("b", uuid="fixed").uuid == "fixed"
    assert isinstance(book.created_at, datetime) and book.updated_at is None


def test_logbook_add_find_iterate_and_stamp_updated_at() -> None:
    book = LogBook("b")
    fd = FlowDetail("f", _uuid())
    book.add(fd)
    assert book.find(fd.uuid) is fd
    assert book.find("nope") is None
    assert list(book) == [fd] and len(book) == 1
    assert book.updated_at is not None


def test_logbook_adding_the_same_uuid_replaces_the_flow() -> None:
    book = LogBook("b")
    first, second = FlowDetail("f", "same"), FlowDetail("g", "same")
    book.add(first)
    book.add(second)
    assert list(book) == [second]


def test_logbook_merge_takes_fields_but_not_flows() -> None:
    mine, theirs = LogBook("b", uuid="u"), LogBook("b", uuid="u")
    theirs.meta = {"a": [1]}
    theirs.updated_at = datetime(2020, 1, 1, tzinfo=UTC)
    theirs.add(FlowDetail("f", _uuid()))
    assert mine.merge(theirs) is mine
    assert mine.meta == {"a": [1]} and mine.updated_at == theirs.updated_at
    assert len(mine) == 0
    deep = LogBook("b", uuid="u").merge(theirs, deep_copy=True)
    assert deep.meta == theirs.meta and deep.meta["a"] is not theirs.meta["a"]


def test_logbook_copy_shares_flows_but_not_containers() -> None:
    book = LogBook("b")
    book.meta = {"k": 1}
    fd = FlowDetail("f", _uuid())
    book.add(fd)
    clone = book.copy()
    clone.meta["k"] = 2
    clone.add(FlowDetail("g", _uuid()))
    assert book.meta == {"k": 1} and len(book) == 1
    assert clone.find(fd.uuid) is fd
    assert len(book.copy(retain_contents=False)) == 0


def test_logbook_dict_round_trip_with_marshalled_times() -> None:
    book = LogBook("b")
    book.meta = {"x": 1}
    book.updated_at = datetime(2021, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    data = book.to_dict(marshal_time=True)
    assert json.loads(json.dumps(data)) == data
    back = LogBook.from_dict(data, unmarshal_time=True)
    assert (back.name, back.uuid, back.meta) == ("b", book.uuid, {"x": 1})
    assert (back.created_at, back.updated_at) == (book.created_at, book.updated_at)
    raw = LogBook.from_dict(book.to_dict())
    assert raw.created_at == book.created_at


def test_logbook_marshals_times_in_taskflows_form() -> None:
    # TaskFlow's from_dict reads oslo.utils' marshall_now dicts only; flowkit wrote ISO text.
    book = LogBook("b")
    book.created_at = datetime(2026, 12, 6, 9, 30, 1, 250, tzinfo=timezone(timedelta(hours=2)))
    book.updated_at = datetime(2026, 12, 6, 7, 31, 2)  # naive: stays naive, no zone
    data = book.to_dict(marshal_time=True)
    assert data["created_at"] == {
        "year": 2026,
        "month": 12,
        "day": 6,
        "hour": 7,
        "minute": 30,
        "second": 1,
        "microsecond": 250,
        "tzname": "UTC",
    }
    assert "tzname" not in data["updated_at"]


def test_logbook_still_reads_the_iso_times_flowkit_wrote_before() -> None:
    data = {"name": "b", "uuid": "u", "created_at": "2021-05-06T07:08:09.123456+00:00", "updated_at": None}
    back = LogBook.from_dict(data, unmarshal_time=True)
    assert back.created_at == datetime(2021, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert back.updated_at is None


def test_logbook_reads_taskflow_time_records() -> None:
    back = LogBook.from_dict(
        {"name": "b", "uuid": "u", "created_at": {"seconds": 0, "microseconds": 5}, "updated_at": None},
        unmarshal_time=True,
    )
    assert back.created_at == datetime(1970, 1, 1, 0, 0, 0, 5, tzinfo=UTC)


def test_logbook_reads_taskflows_marshalled_times() -> None:
    # What TaskFlow's LogBook.to_dict(marshal_time=True) writes (oslo's marshall_now).
    fields = {
        "day": 6,
        "month": 12,
        "year": 2026,
        "hour": 7,
        "minute": 23,
        "second": 52,
        "microsecond": 847302,
    }
    back = LogBook.from_dict(
        {"name": "b", "uuid": "u", "created_at": fields, "updated_at": {**fields, "tzname": "UTC"}},
        unmarshal_time=True,
    )
    assert back.created_at == back.updated_at == datetime(2026, 12, 6, 7, 23, 52, 847302, tzinfo=UTC)
    with pytest.raises(exc.InvalidFormat, match="is not a time"):
        LogBook.from_dict({"name": "b", "uuid": "u", "created_at": {"year": 2026}}, unmarshal_time=True)


@pytest.mark.parametrize(
    ("stored", "error", "said"),
    [
        # Its cause (the field TaskFlow's form lacks) on the line below, once.
        ({"year": 2026}, exc.InvalidFormat, "{'year': 2026}\n  KeyError: 'month'"),
        ([2026], exc.InvalidFormat, "[2026]"),
        # ISO text (what flowkit once wrote) that is none: datetime's ValueError, as before.
        ("2026-xx", ValueError, "'2026-xx'"),
    ],
)
def test_a_stored_time_that_cannot_be_read_names_the_logbook_and_the_field(
    stored: Any, error: type[Exception], said: str
) -> None:
    # It said "cannot read a time from {'year': 2026}: 'month'" then "KeyError: 'month'"
    # again, of no logbook or field; bad ISO text raised datetime's bare ValueError.
    with pytest.raises(error) as refused:
        LogBook.from_dict(
            {"name": "nightly", "uuid": "book-1", "created_at": None, "updated_at": stored},
            unmarshal_time=True,
        )
    assert str(refused.value) == f"'updated_at' of logbook 'nightly' (book-1) is not a time: {said}"


def test_from_dict_without_uuid_raises_invalid_format() -> None:
    with pytest.raises(exc.InvalidFormat):
        LogBook.from_dict({"name": "b"})
    with pytest.raises(exc.InvalidFormat):
        TaskDetail.from_dict({"uuid": "u"})


def test_non_dict_meta_in_a_record_reads_as_empty() -> None:
    assert FlowDetail.from_dict({"name": "f", "uuid": "u", "meta": None}).meta == {}


def test_pformat_shows_the_tree_and_progress_as_percent() -> None:
    book = LogBook("b")
    fd = FlowDetail("f", "fu")
    ad = TaskDetail("t", "tu")
    ad.meta["progress"] = 0.5
    fd.add(ad)
    book.add(fd)
    text = book.pformat(linesep="\n")
    assert text.splitlines()[0] == "LogBook: 'b'"
    assert " FlowDetail: 'f'" in text and "  TaskDetail: 't'" in text
    assert "+ progress = 50.00%" in text


# -- FlowDetail ----------------------------------------------------------------


def test_flow_detail_update_takes_everything_by_reference() -> None:
    fd, other = FlowDetail("f", "u"), FlowDetail("f", "u")
    other.state = states.SUCCESS
    other.add(TaskDetail("t", _uuid()))
    assert fd.update(other) is fd
    assert fd.state == states.SUCCESS and len(fd) == 1 and fd.meta is other.meta


def test_flow_detail_merge_takes_state_and_meta_not_atoms() -> None:
    fd, other = FlowDetail("f", "u"), FlowDetail("f", "u")
    other.state, other.meta = states.FAILURE, {"m": 1}
    other.add(TaskDetail("t", _uuid()))
    fd.merge(other)
    assert (fd.state, fd.meta, len(fd)) == (states.FAILURE, {"m": 1}, 0)


def test_flow_detail_copy_without_contents() -> None:
    fd = FlowDetail("f", "u")
    fd.add(TaskDetail("t", _uuid()))
    assert len(fd.copy()) == 1 and len(fd.copy(retain_contents=False)) == 0


def test_flow_detail_dict_round_trip() -> None:
    fd = FlowDetail("f", "u")
    fd.state, fd.meta = states.RUNNING, {"a": 1}
    back = FlowDetail.from_dict(fd.to_dict())
    assert (back.name, back.uuid, back.state, back.meta) == ("f", "u", states.RUNNING, {"a": 1})
    assert set(fd.to_dict()) == {"name", "uuid", "state", "meta"}


# -- TaskDetail ----------------------------------------------------------------


def test_task_detail_defaults() -> None:
    ad = TaskDetail("t", "u")
    assert (ad.state, ad.intention, ad.results, ad.failure, ad.version) == (
        None,
        states.EXECUTE,
        None,
        None,
        None,
    )


def test_task_put_success_sets_results_and_clears_failures() -> None:
    ad = TaskDetail("t", "u")
    ad.failure = _failure()
    assert ad.put(states.SUCCESS, 5) is True
    assert (ad.state, ad.results, ad.failure) == (states.SUCCESS, 5, None)
    assert ad.put(states.SUCCESS, 5) is False


def test_task_put_failure_sets_failure_and_clears_results() -> None:
    ad = TaskDetail("t", "u")
    ad.put(states.SUCCESS, 5)
    failure = _failure()
    ad.put(states.FAILURE, failure)
    assert (ad.state, ad.results, ad.failure) == (states.FAILURE, None, failure)


def test_task_put_revert_states() -> None:
    ad = TaskDetail("t", "u")
    failure = _failure()
    ad.put(states.REVERT_FAILURE, failure)
    assert ad.revert_failure is failure
    ad.put(states.REVERTED, "undone")
    assert (ad.revert_results, ad.revert_failure) == ("undone", None)


def test_task_reset_forgets_everything_and_intends_to_execute() -> None:
    ad = TaskDetail("t", "u")
    ad.put(states.SUCCESS, 1)
    ad.intention = states.REVERT
    ad.reset(states.PENDING)
    assert (ad.state, ad.results, ad.intention) == (states.PENDING, None, states.EXECUTE)


def test_task_dict_has_taskflow_keys_and_round_trips_failures() -> None:
    ad = TaskDetail("t", "u")
    ad.failure = _failure("exec")
    ad.revert_failure = _failure("rev")
    ad.results, ad.version = {"r": 1}, "1.2"
    data = ad.to_dict()
    assert set(data) == {
        "name",
        "uuid",
        "state",
        "intention",
        "results",
        "failure",
        "revert_results",
        "revert_failure",
        "meta",
        "version",
    }
    back = TaskDetail.from_dict(json.loads(json.dumps(data)))
    assert back.failure is not None and back.revert_failure is not None
    assert back.failure.matches(ad.failure) and back.revert_failure.matches(ad.revert_failure)
    assert (back.results, back.version) == ({"r": 1}, "1.2")


def test_task_merge_takes_all_fields_and_refuses_retry_details() -> None:
    ad, other = TaskDetail("t", "u"), TaskDetail("t", "u")
    other.put(states.SUCCESS, [1])
    other.meta = {"m": 1}
    ad.merge(other)
    assert (ad.state, ad.results, ad.meta) == (states.SUCCESS, [1], {"m": 1})
    assert ad.results is other.results  # results are shared, never copied
    with pytest.raises(NotImplementedError, match="^Can only merge with other task details"):
        ad.merge(RetryDetail("r", "u"))
    with pytest.raises(NotImplementedError, match="^Can only merge with other retry details"):
        RetryDetail("r", "u").merge(ad)


def test_task_copy_owns_its_meta() -> None:
    ad = TaskDetail("t", "u")
    ad.meta = {"m": 1}
    clone = ad.copy()
    clone.meta["m"] = 2
    assert type(clone) is TaskDetail and ad.meta == {"m": 1}


def test_atom_update_takes_every_field() -> None:
    ad, other = TaskDetail("t", "u"), TaskDetail("t", "u")
    other.put(states.FAILURE, _failure())
    other.intention = states.REVERT
    ad.update(other)
    assert (ad.state, ad.intention, ad.failure) == (states.FAILURE, states.REVERT, other.failure)


# -- RetryDetail ---------------------------------------------------------------


def test_retry_success_appends_to_the_history() -> None:
    rd = RetryDetail("r", "u")
    rd.put(states.SUCCESS, 1)
    rd.put(states.SUCCESS, 2)
    assert rd.results == [(1, {}), (2, {})]
    assert rd.last_results == 2 and rd.last_failures == {}


def test_retry_without_history_has_no_last_results() -> None:
    rd = RetryDetail("r", "u")
    with pytest.raises(exc.NotFound):
        _ = rd.last_results
    with pytest.raises(exc.NotFound):
        _ = rd.last_failures


def test_retry_failure_keeps_the_history_and_reset_clears_it() -> None:
    rd = RetryDetail("r", "u")
    rd.put(states.SUCCESS, 1)
    rd.put(states.FAILURE, _failure())
    assert rd.results == [(1, {})]
    rd.reset(states.PENDING)
    assert rd.results == [] and rd.failure is None


def test_retry_history_serialises_as_lists_with_failure_records() -> None:
    rd = RetryDetail("r", "u")
    rd.put(states.SUCCESS, (1, 2))
    failure = _failure()
    rd.results[-1][1]["task"] = failure
    data = json.loads(json.dumps(rd.to_dict()))
    assert data["results"][0][0] == [1, 2]
    assert data["results"][0][1]["task"] == json.loads(json.dumps(failure.to_dict()))
    back = RetryDetail.from_dict(data)
    assert back.results[0][1]["task"].matches(failure)


def test_retry_copy_and_merge_make_their_own_history() -> None:
    rd = RetryDetail("r", "u")
    rd.put(states.SUCCESS, 1)
    clone = rd.copy()
    clone.put(states.SUCCESS, 2)
    assert len(rd.results) == 1
    merged = RetryDetail("r", "u").merge(clone)
    clone.results[0][1]["x"] = _failure()
    assert merged.results[0][1] == {}


def test_merge_takes_taskflows_keyword_names() -> None:
    # TaskFlow callers write book.merge(lb=...) and flow.merge(fd=...).
    book, other_book = LogBook("b", uuid="u"), LogBook("b", uuid="u")
    other_book.meta = {"k": 1}
    assert book.merge(lb=other_book, deep_copy=True) is book
    assert book.meta == {"k": 1}
    flow, other_flow = FlowDetail("f", "fu"), FlowDetail("f", "fu")
    other_flow.state = "RUNNING"
    assert flow.merge(fd=other_flow) is flow
    assert flow.state == "RUNNING"


# -- type names ----------------------------------------------------------------


def test_atom_detail_type_names_round_trip() -> None:
    for cls in (TaskDetail, RetryDetail):
        assert models.atom_detail_class(models.atom_detail_type(cls("a", "u"))) is cls
    assert models.atom_detail_class("TASK_DETAIL") is TaskDetail  # TaskFlow's spelling
    assert models.atom_detail_class("RETRY_DETAIL") is RetryDetail
    assert models.atom_detail_class("TaskDetail") is TaskDetail  # written by earlier flowkit releases
    assert models.atom_detail_class("RetryDetail") is RetryDetail


def test_atom_detail_type_names_are_taskflows() -> None:
    # Public: TaskFlow code compares atom_detail_type() with these strings.
    assert models.atom_detail_type(TaskDetail("a", "u")) == "TASK_DETAIL"
    assert models.atom_detail_type(RetryDetail("a", "u")) == "RETRY_DETAIL"
    assert sorted(models.ATOM_TYPES) == ["RETRY_DETAIL", "TASK_DETAIL"]


def test_unknown_atom_detail_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="Nope"):
        models.atom_detail_class("Nope")
    with pytest.raises(TypeError):
        models.atom_detail_type(object())  # type: ignore[arg-type]


def test_importing_models_pulls_in_no_backend_library() -> None:
    code = (
        "import sys, flowkit.persistence.models, flowkit.persistence.backends;"
        "bad = [m for m in ('sqlalchemy', 'kazoo', 'fasteners') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
