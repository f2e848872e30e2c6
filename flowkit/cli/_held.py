"""The job a conductor runs a flow for, and the check ``flowkit flows resume`` makes of it.

``flowkit conductor`` records in the metadata of each flow it runs the job it
runs it for: the job's uuid, the board's kind and URL (password masked: the
database is no place for it). Without that record, ``flowkit flows resume``
of such a flow ran it beside the live conductor still holding the job, and its
tasks ran twice at once. With it, the resume refuses unless the operator shows
the job is no longer claimed (``--board URL``, the board read for the job's
claim) or says to go on anyway (``--force``).

The check costs nothing for a flow ``flowkit run`` ran: it records no job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flowkit._utils.text import log_safe
from flowkit.cli._common import CliError, one_line

__all__ = ["JOB_KEY", "JobRecord", "check_unclaimed"]

#: Flow detail metadata key holding the :class:`JobRecord` of a conductor's run.
JOB_KEY = "job"

#: How every refusal ends: the way past it, for an operator who knows better.
_OR_FORCE = "or --force if you are sure no conductor runs it"


@dataclass(frozen=True)
class JobRecord:
    """The job a conductor runs a flow for, as its flow's metadata keeps it.

    Attributes:
        uuid: the job's uuid.
        board: the board's kind (the scheme of its URL: ``redis``, ``zookeeper``...).
        url: the board's URL, any password in it masked.
    """

    uuid: str
    board: str
    url: str

    @classmethod
    def of(cls, job_uuid: str, board_url: str) -> JobRecord:
        """The record of job ``job_uuid`` on the board at ``board_url`` (its password masked here)."""
        from flowkit.persistence.backends._urls import mask_url

        return cls(job_uuid, urlsplit(board_url).scheme.lower() or board_url, mask_url(board_url))

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> JobRecord | None:
        """The record a flow's metadata holds, or ``None`` (a flow no conductor ran, or a malformed entry)."""
        entry = (meta or {}).get(JOB_KEY)
        if not isinstance(entry, Mapping):
            return None
        fields = (entry.get("uuid"), entry.get("board"), entry.get("url"))
        if not all(isinstance(value, str) for value in fields):
            return None
        uuid, board, url = (str(value) for value in fields)
        return cls(uuid, board, url)

    def to_dict(self) -> dict[str, str]:
        """The record as stored in the flow's metadata (and shown by ``--dry-run --json``)."""
        return {"uuid": self.uuid, "board": self.board, "url": self.url}

    def describe(self) -> str:
        """``job UUID on KIND board URL``, as the messages name it."""
        return f"job {self.uuid} on {self.board} board {self.url}"


def check_unclaimed(flow: Any, record: JobRecord, board_url: str | None) -> None:
    """Raise unless the board at ``board_url`` shows ``record``'s job is no longer claimed.

    A job gone from the board (consumed, trashed) counts as unclaimed: its
    flow has no holder. A claim that outlived its conductor expires (Redis)
    or goes with its session (ZooKeeper), after which the resume may go on.

    Args:
        flow: the flow detail to be resumed (named in the messages).
        record: the job the flow's metadata names.
        board_url: ``--board``: ``None`` when not given.

    The board given is compared with the recorded one by what identifies a
    board (:func:`~flowkit.jobs.backends._address.board_address`: its kind,
    servers, database and namespace or path, defaults filled in), not as text:
    ``redis://h:6379`` is ``redis://h:6379/0``, with its password or without.

    Raises:
        CliError: no ``--board`` given, another board given, or the job is
            claimed (status 2); the board cannot be read (status 1).
    """
    from flowkit import exceptions as exc
    from flowkit.jobs import backends
    from flowkit.jobs.backends._address import board_address
    from flowkit.persistence.backends._urls import mask_url

    if board_url is None:
        raise CliError(
            f"flow '{flow.name}' ({flow.uuid}) is run by a conductor for {record.describe()}; resuming it"
            " while a conductor holds the job runs its tasks twice: pass --board URL to check that the job"
            f" is no longer claimed, {_OR_FORCE}"
        )
    masked = mask_url(board_url)
    try:
        given = board_address(board_url)
    except ValueError as err:
        raise CliError(f"--board: {err}") from err
    try:
        recorded = board_address(record.url)
    except ValueError:  # a record no conductor made: nothing shows the board given is its
        recorded = None
    if given != recorded:
        why = f"{given.differences(recorded)}; " if recorded is not None else ""
        raise CliError(
            f"--board {masked} is not the board of job {record.uuid} ({record.url}): {why}give that"
            f" board's URL, {_OR_FORCE}"
        )
    try:
        board = backends.fetch("flowkit", {"board": board_url})
    except (exc.NotFound, ValueError) as err:
        raise CliError(f"--board {masked}: {one_line(err)}") from err
    try:
        board.connect()
        claim = board.claim_of(record.uuid)
    except exc.JobFailure as err:
        raise CliError(f"cannot read board {masked}: {mask_url(one_line(err))}", status=1) from err
    finally:
        board.close()
    if claim is not None:
        raise CliError(
            f"job {record.uuid} is claimed by '{log_safe(claim.owner)}' on {record.board} board {masked}:"
            f" a live conductor runs flow '{flow.name}'; resume it once that conductor has stopped and"
            f" its claim expired, {_OR_FORCE}"
        )
