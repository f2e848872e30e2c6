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


def test_a_board_url_naming_no_board_or_a_record_naming_none_is_refused_before_anything_connects() -> None:
    from flowkit.cli._common import CliError
    from flowkit.cli._held import hold_job
    from flowkit.persistence.models import FlowDetail

    flow = FlowDetail("f", "fd-1")
    record = JobRecord.of("j-1", "redis://:pw@127.0.0.1:1/0")
    with pytest.raises(CliError) as raised, hold_job(flow, record, "redis://:pw@127.0.0.1:1/orders", None):
        pass
    assert str(raised.value) == (
        "--board: jobboard URL 'redis://:***@127.0.0.1:1/orders': the URL's database must be a number (/0),"
        " not '/orders'"
    )
    # A record no conductor wrote (its port is no number): no board given can be shown to be its.
    torn = JobRecord("j-1", "redis", "redis://127.0.0.1:port/0")
    with pytest.raises(CliError) as raised, hold_job(flow, torn, "redis://127.0.0.1:1/0", None):
        pass
    assert str(raised.value) == (
        "--board redis://127.0.0.1:1/0 is not the board of job j-1 (redis://127.0.0.1:port/0): give that"
        " board's URL, or --force if you are sure no conductor runs it"
    )
    assert raised.value.status == 2
