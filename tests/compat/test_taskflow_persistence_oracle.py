"""TaskFlow 6.5 as an oracle for persistence records and modules: what one writes, the other reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flowkit.persistence import models

tf_models = pytest.importorskip("taskflow.persistence.models")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_taskflow_reads_the_times_flowkit_marshals() -> None:
    book = models.LogBook("b")
    book.created_at = datetime(2026, 12, 6, 9, 30, 1, 250, tzinfo=UTC)
    book.updated_at = datetime(2026, 12, 6, 9, 31, 2, 999999, tzinfo=UTC)
    theirs = tf_models.LogBook.from_dict(book.to_dict(marshal_time=True), unmarshal_time=True)
    assert (theirs.name, theirs.uuid) == ("b", book.uuid)
    assert (theirs.created_at, theirs.updated_at) == (book.created_at, book.updated_at)


def test_flowkit_reads_the_times_taskflow_marshals() -> None:
    book = tf_models.LogBook("b")
    book.updated_at = datetime(2026, 12, 6, 9, 31, 2, 17, tzinfo=UTC)
    ours = models.LogBook.from_dict(book.to_dict(marshal_time=True), unmarshal_time=True)
    assert ours.created_at == book.created_at.replace(tzinfo=UTC)  # TaskFlow's utcnow() is naive UTC
    assert ours.updated_at == book.updated_at
