"""The JSON document a job is posted as, shared by every board.

Boards store a job as one JSON object::

    {"uuid": "...", "name": "...", "priority": "NORMAL", "sequence": 7,
     "created_on": "2026-12-05T14:00:00+00:00", "details": {...},
     "book": {"name": "...", "uuid": "...", "flows": ["<flow detail uuid>", ...]}}

Reading one back checks its shape, so a malformed document (written by a bug,
by hand, by another program) becomes a :class:`MalformedJob` naming where it
was found, instead of an ``AttributeError`` deep inside a conductor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit.jobs.base import JobPriority
from flowkit.persistence._json import model_dump, unstorable

if TYPE_CHECKING:
    from flowkit.persistence.models import LogBook

__all__ = ["MalformedJob", "Posting", "dumps", "loads"]


class MalformedJob(exc.InvalidFormat):
    """A job document on a board cannot be read.

    Attributes:
        location: where the document was found (a key or a node path).
    """

    def __init__(self, message: str, *, location: str) -> None:
        super().__init__(message)
        self.location = location


@dataclass(frozen=True)
class Posting:
    """A job as posted: everything but its claim state."""

    uuid: str
    name: str
    sequence: int
    priority: JobPriority = JobPriority.NORMAL
    created_on: datetime = field(default_factory=lambda: datetime.now(UTC))
    details: dict[str, Any] = field(default_factory=dict)
    book: dict[str, Any] | None = None

    @classmethod
    def make(
        cls,
        uuid: str,
        name: str,
        sequence: int,
        book: LogBook | None,
        details: dict[str, Any] | None,
        priority: JobPriority | str,
    ) -> Posting:
        """A new posting; checks that ``details`` are JSON-able.

        Raises:
            InvalidFormat: ``details`` is not a dict of JSON values.
            ValueError: ``priority`` is not a priority.
        """
        if not isinstance(name, str) or not name:
            raise exc.InvalidFormat(f"a job's name must be a non-empty string, not {name!r}")
        try:
            # A pydantic model goes as its JSON dump, as in storage, the cache and the wire.
            encoded = json.dumps(dict(details or {}), allow_nan=False, default=model_dump)
        except (TypeError, ValueError, RecursionError) as err:
            raise unstorable(f"details of job {name!r}", err) from err
        # The poster's job holds what every other reader gets back (lists for tuples, text
        # keys), and none of the caller's objects, which it may change after posting.
        details = json.loads(encoded)
        book_data = None
        if book is not None:
            book_data = {"name": book.name, "uuid": book.uuid, "flows": [fd.uuid for fd in book]}
        return cls(
            uuid=uuid,
            name=name,
            sequence=sequence,
            priority=JobPriority.convert(priority),
            details=details,
            book=book_data,
        )

    def to_dict(self) -> dict[str, Any]:
        """The stored form."""
        data: dict[str, Any] = {
            "uuid": self.uuid,
            "name": self.name,
            "priority": self.priority.value,
            "sequence": self.sequence,
            "created_on": self.created_on.isoformat(),
            "details": self.details,
        }
        if self.book is not None:
            data["book"] = self.book
        return data


def dumps(posting: Posting) -> str:
    """Encode ``posting`` as the JSON text boards store."""
    return json.dumps(posting.to_dict(), separators=(",", ":"), sort_keys=True)


def _field(data: dict[str, Any], key: str, kind: type, location: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise MalformedJob(
            f"job document at {location} has no valid {key!r} (expected {kind.__name__}, got {value!r})",
            location=location,
        )
    return value


def loads(raw: str | bytes, location: str) -> Posting:
    """Decode a stored job document.

    Args:
        raw: the stored text.
        location: where it was read from, for the error message.

    Raises:
        MalformedJob: it is not JSON or lacks a required field.
    """
    try:
        data = json.loads(raw)
    except (TypeError, ValueError, UnicodeDecodeError) as err:
        raise exc.quoting_cause(
            MalformedJob(f"job document at {location} is not JSON: {err}", location=location)
        ) from err
    if not isinstance(data, dict):
        raise MalformedJob(f"job document at {location} is not a JSON object", location=location)
    uuid = _field(data, "uuid", str, location)
    name = _field(data, "name", str, location)
    sequence = _field(data, "sequence", int, location)
    details = data.get("details") or {}
    if not isinstance(details, dict):
        raise MalformedJob(
            f"job document at {location} has details that are not an object", location=location
        )
    book = data.get("book")
    if book is not None and not (isinstance(book, dict) and isinstance(book.get("uuid"), str)):
        raise MalformedJob(f"job document at {location} has a malformed 'book'", location=location)
    try:
        priority = JobPriority.convert(data.get("priority", "NORMAL"))
        created_on = datetime.fromisoformat(_field(data, "created_on", str, location))
    except ValueError as err:
        raise exc.quoting_cause(
            MalformedJob(f"job document at {location}: {err}", location=location)
        ) from err
    return Posting(
        uuid=uuid,
        name=name,
        sequence=sequence,
        priority=priority,
        created_on=created_on,
        details=details,
        book=book,
    )
