"""Turning models into table rows and back.

Rows are plain dicts keyed by column name, with structured values already
JSON text, so one encoded row serves an INSERT, an UPDATE and (decoded again)
the fresh object handed back to the caller: what callers get is exactly what
a later read returns (tuples come back as lists, and so on).

Encoding is on the engine's hot path (one atom row per finished task), so it
reads attributes directly and calls the C JSON encoder once per field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flowkit import exceptions as exc
from flowkit._utils.records import Record
from flowkit.persistence import models
from flowkit.persistence._json import unstorable
from flowkit.persistence.base import encode_json

__all__ = [
    "BookFlow",
    "assemble_flows",
    "atom_from_row",
    "atom_row",
    "book_from_row",
    "book_row",
    "build_book",
    "dumps",
    "flow_from_row",
    "flow_row",
    "group_atoms",
    "loads",
    "update_params",
    "utc",
]

_encode = encode_json
_decode = json.JSONDecoder().decode


class BookFlow(Record):
    """A flow detail read with the uuid of its book, so flows read in bulk can be sorted into books."""

    book_uuid: str
    flow: models.FlowDetail


def dumps(value: Any) -> str | None:
    """JSON text of ``value``; ``None`` is stored as SQL NULL."""
    return None if value is None else _encode(value)


def loads(text: str | None, column: str, kind: str, name: object = None, uuid: object = None) -> Any:
    """The value of stored JSON text (NULL reads as ``None``).

    Args:
        column, kind, name, uuid: the column and the record it belongs to (a
            name or a uuid may be missing), put into words only if the text is
            damaged: every record read passes here.

    Raises:
        StorageFailure: the text is not JSON (a damaged record, named).
    """
    if text is None:
        return None
    try:
        return _decode(text)
    except ValueError as err:
        raise exc.quoting_cause(
            exc.StorageFailure(
                f"column {column!r} of {_record_words(kind, name, uuid)} holds invalid JSON ({err});"
                " the record is damaged"
            )
        ) from err


def _record_words(kind: str, name: object = None, uuid: object = None) -> str:
    """A stored record as errors name it: ``atom detail 'pay' (uuid)``, or by its name or its uuid alone."""
    if name is None:
        return f"{kind} {uuid!r}"
    if uuid is None:
        return f"{kind} {name!r}"
    return f"{kind} {name!r} ({uuid})"


def utc(when: datetime | None) -> datetime | None:
    """``when`` as an aware UTC time (SQLite hands back naive UTC values)."""
    if when is None:
        return None
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def book_row(book: models.LogBook) -> dict[str, Any]:
    """The ``logbooks`` row of ``book``."""
    return {
        "uuid": book.uuid,
        "name": book.name,
        "meta": dumps(book.meta),
        "created_at": utc(book.created_at),
        "updated_at": utc(book.updated_at),
    }


def flow_row(fd: models.FlowDetail, parent_uuid: str) -> dict[str, Any]:
    """The ``flowdetails`` row of ``fd`` under the book ``parent_uuid`` (times excluded)."""
    return {
        "uuid": fd.uuid,
        "parent_uuid": parent_uuid,
        "name": fd.name,
        "state": fd.state,
        "meta": dumps(fd.meta),
    }


def atom_row(ad: models.AtomDetail, parent_uuid: str) -> dict[str, Any]:
    """The ``atomdetails`` row of ``ad`` under the flow ``parent_uuid`` (times excluded).

    Raises:
        StorageFailure: a result cannot be written as JSON (the atom is named).
    """
    if isinstance(ad, models.RetryDetail):
        # The retry history holds failures, which need their own records; the
        # detail's record has them, and its own failures' records too: one
        # to_dict() gives all three (each failure marshalled once, not twice).
        record = ad.to_dict()
        results: Any = record["results"]
        results_text = None
        failure, revert_failure = record["failure"], record["revert_failure"]
    else:
        results = ad.results
        # What the engine's check encoded already (see models.attach_encoded).
        results_text = models.encoded_text(ad, "results")
        failure = None if ad.failure is None else ad.failure.to_dict()
        revert_failure = None if ad.revert_failure is None else ad.revert_failure.to_dict()
    revert_text = models.encoded_text(ad, "revert_results")
    try:
        return {
            "uuid": ad.uuid,
            "parent_uuid": parent_uuid,
            "atom_type": models.atom_detail_type(ad),
            "name": ad.name,
            "state": ad.state,
            "intention": ad.intention,
            "version": None if ad.version is None else str(ad.version),
            "results": dumps(results) if results_text is None else results_text,
            "failure": None if failure is None else _encode(failure),
            "revert_results": dumps(ad.revert_results) if revert_text is None else revert_text,
            "revert_failure": None if revert_failure is None else _encode(revert_failure),
            "meta": dumps(ad.meta),
        }
    except (TypeError, ValueError, RecursionError) as err:
        raise unstorable(f"data of atom {ad.name!r} ({ad.uuid})", err, error=exc.StorageFailure) from err


def book_from_row(row: Mapping[Any, Any]) -> models.LogBook:
    """A new :class:`LogBook` (without flow details) from its row."""
    book = models.LogBook(row["name"], row["uuid"])
    book.meta = loads(row["meta"], "meta", "logbook", uuid=row["uuid"]) or {}
    book.created_at = utc(row["created_at"])
    book.updated_at = utc(row["updated_at"])
    return book


def flow_from_row(row: Mapping[Any, Any]) -> models.FlowDetail:
    """A new :class:`FlowDetail` (without atom details) from its row."""
    fd = models.FlowDetail(row["name"], row["uuid"])
    fd.state = row["state"]
    fd.meta = loads(row["meta"], "meta", "flow detail", uuid=row["uuid"]) or {}
    return fd


def atom_from_row(row: Mapping[Any, Any]) -> models.AtomDetail:
    """A new task or retry detail from its row.

    Raises:
        StorageFailure: the stored atom type is unknown.
    """
    name, uuid = row["name"], row["uuid"]
    try:
        cls = models.atom_detail_class(row["atom_type"])
    except TypeError as err:
        where = _record_words("atom detail", name, uuid)
        raise exc.quoting_cause(exc.StorageFailure(f"{where}: {err}")) from err
    fields = {
        column: loads(row[column], column, "atom detail", name, uuid)
        for column in ("results", "failure", "revert_results", "revert_failure", "meta")
    }
    try:
        return cls.from_dict(
            {
                "name": name,
                "uuid": uuid,
                "state": row["state"],
                "intention": row["intention"],
                "version": row["version"],
                **fields,
            }
        )
    except (TypeError, ValueError, KeyError) as err:
        where = _record_words("atom detail", name, uuid)
        raise exc.quoting_cause(
            exc.StorageFailure(f"{where} cannot be read back ({err}); the record is damaged")
        ) from err


def group_atoms(rows: Sequence[Any]) -> dict[str, list[models.AtomDetail]]:
    """Atom details of ``rows`` (atomdetails rows), grouped by their flow's uuid."""
    grouped: dict[str, list[models.AtomDetail]] = {}
    for row in rows:
        mapping = row._mapping
        grouped.setdefault(mapping["parent_uuid"], []).append(atom_from_row(mapping))
    return grouped


def assemble_flows(
    flow_rows: Sequence[Any], atoms: dict[str, list[models.AtomDetail]] | None
) -> list[BookFlow]:
    """The flow detail of each flowdetails row, given atoms added (``None``: lazy)."""
    flows = []
    for row in flow_rows:
        mapping = row._mapping
        fd = flow_from_row(mapping)
        if atoms is not None:
            for ad in atoms.get(fd.uuid, ()):
                fd.add(ad)
        flows.append(BookFlow(mapping["parent_uuid"], fd))
    return flows


def update_params(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` as UPDATE parameters: keyed by ``b_uuid``, identity and creation time left alone."""
    params = {key: value for key, value in row.items() if key not in ("uuid", "created_at")}
    params["b_uuid"] = row["uuid"]
    return params


def build_book(row: Any, flows: list[BookFlow]) -> models.LogBook:
    """The book of a logbooks row, holding those of ``flows`` that belong to it."""
    book = book_from_row(row._mapping)
    for found in flows:
        if found.book_uuid == book.uuid:
            book.add(found.flow)
    book.updated_at = utc(row._mapping["updated_at"])  # add() stamped it; keep the stored one
    return book
