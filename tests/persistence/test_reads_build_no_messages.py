"""Reading a record puts its name into words only when the record is damaged.

The error a damaged record raises names it (``column 'results' of atom
detail 'pay' (uuid) holds invalid JSON``), and that text was built for every
logbook, flow detail and atom detail read, damaged or not: five f-strings and
a ``repr`` per atom row read from SQL, two per logbook read from a directory
or ZooKeeper. A name and uuid that refuse to be formatted show which reads
still build it; the damaged reads show the words are still said.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flowkit import exceptions as exc
from flowkit.persistence import models
from flowkit.persistence.backends.sqlalchemy import _codec


class _Unsaid(str):
    """A name or uuid that fails the test when a good read formats it."""

    __slots__ = ()

    def __repr__(self) -> str:
        raise AssertionError(f"a good read put {str(self)!r} into words")

    def __format__(self, spec: str) -> str:
        raise AssertionError(f"a good read put {str(self)!r} into words")


_WHEN = {"year": 2026, "month": 12, "day": 7, "hour": 16, "minute": 0, "second": 0, "tzname": "UTC"}


def _atom_row(**changes: Any) -> dict[str, Any]:
    row = {
        "name": _Unsaid("pay"),
        "uuid": _Unsaid("atom-1"),
        "atom_type": "TASK_DETAIL",
        "state": "SUCCESS",
        "intention": "EXECUTE",
        "version": "1.0",
        "results": '{"paid": 3}',
        "failure": None,
        "revert_results": None,
        "revert_failure": None,
        "meta": '{"progress": 1.0}',
    }
    return {**row, **changes}


def test_a_logbook_read_with_its_times_formats_nothing() -> None:
    data = {"name": _Unsaid("book"), "uuid": _Unsaid("book-1"), "created_at": _WHEN, "updated_at": _WHEN}
    book = models.LogBook.from_dict(data, unmarshal_time=True)
    assert book.created_at == datetime(2026, 12, 7, 16, tzinfo=UTC) == book.updated_at


def test_a_logbook_time_that_is_no_time_is_still_named() -> None:
    data = {"name": "book", "uuid": "book-1", "created_at": _WHEN, "updated_at": "yesterday"}
    with pytest.raises(
        ValueError, match=r"'updated_at' of logbook 'book' \(book-1\) is not a time: 'yesterday'"
    ):
        models.LogBook.from_dict(data, unmarshal_time=True)
    data = {"name": "book", "uuid": "book-1", "created_at": {"year": 2026}}
    with pytest.raises(exc.InvalidFormat, match=r"'created_at' of logbook 'book' \(book-1\) is not a time"):
        models.LogBook.from_dict(data, unmarshal_time=True)


def test_sql_rows_read_format_nothing() -> None:
    atom = _codec.atom_from_row(_atom_row())
    assert (atom.results, atom.meta) == ({"paid": 3}, {"progress": 1.0})
    times = {"created_at": None, "updated_at": None}
    book = _codec.book_from_row({"name": "book", "uuid": _Unsaid("book-1"), "meta": '{"a": 1}', **times})
    flow = _codec.flow_from_row({"name": "flow", "uuid": _Unsaid("flow-1"), "state": "SUCCESS", "meta": "{}"})
    assert (book.meta, flow.meta) == ({"a": 1}, {})


@pytest.mark.parametrize(
    ("row", "said"),
    [
        (
            _atom_row(name="pay", uuid="atom-1", results="{not json"),
            "column 'results' of atom detail 'pay' (atom-1)",
        ),
        (_atom_row(name="pay", uuid="atom-1", meta="[1"), "column 'meta' of atom detail 'pay' (atom-1)"),
        (
            _atom_row(name="pay", uuid="atom-1", atom_type="BOGUS"),
            "atom detail 'pay' (atom-1): Unknown atom type",
        ),
        (
            _atom_row(name="pay", uuid="atom-1", failure="[1]"),
            "atom detail 'pay' (atom-1) cannot be read back",
        ),
    ],
    ids=["results", "meta", "atom type", "failure"],
)
def test_a_damaged_sql_atom_row_is_still_named(row: dict[str, Any], said: str) -> None:
    with pytest.raises(exc.StorageFailure) as caught:
        _codec.atom_from_row(row)
    assert said in caught.value.message, caught.value.message


def test_damaged_sql_book_and_flow_rows_are_still_named() -> None:
    times = {"created_at": None, "updated_at": None}
    with pytest.raises(exc.StorageFailure, match="column 'meta' of logbook 'book-1' holds invalid JSON"):
        _codec.book_from_row({"name": "book", "uuid": "book-1", "meta": "{", **times})
    with pytest.raises(exc.StorageFailure, match="column 'meta' of flow detail 'flow-1' holds invalid JSON"):
        _codec.flow_from_row({"name": "flow", "uuid": "flow-1", "state": None, "meta": "{"})
