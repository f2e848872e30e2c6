"""The job record a conductor keeps in a flow's metadata (``flowkit.cli._held``)."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit.cli._held import JOB_KEY, JobRecord


def test_a_job_record_masks_the_board_password_and_names_the_kind() -> None:
    record = JobRecord.of("j-1", "redis://user:s3cret@127.0.0.1:6379/0?namespace=ns")
    assert record == JobRecord("j-1", "redis", "redis://user:***@127.0.0.1:6379/0?namespace=ns")
    assert JobRecord.from_meta({JOB_KEY: record.to_dict()}) == record


@pytest.mark.parametrize(
    "meta",
    [
        None,
        {},  # a flow `flowkit run` ran
        {JOB_KEY: "j-1"},
        {JOB_KEY: {"uuid": "j-1", "board": "redis"}},
        {JOB_KEY: {"uuid": 1, "board": "redis", "url": "redis://h"}},
    ],
)
def test_no_job_record_where_the_metadata_holds_none_well_formed(meta: dict[str, Any] | None) -> None:
    assert JobRecord.from_meta(meta) is None
