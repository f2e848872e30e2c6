"""``flowkit flows resume`` of a flow a conductor runs for a job: the resume holds the job.

Every conductor records in the metadata of each flow it runs the job it runs
it for (:mod:`flowkit.conductors._job_record`). Without a guard, ``flowkit
flows resume`` of such a flow ran it beside the live conductor holding the
job, its tasks twice at once. A check of the job's claim alone left a window:
between the check and the end of the run a conductor could claim the job and
run the same flow detail.

So the resume holds the job itself while it runs, as a conductor does
(:func:`hold_job`): it claims the job on its board (``--board URL``) under
:func:`claimant` (``flowkit flows resume@HOST:PID``), refusing while someone
else holds it, and runs with the flow detail's write fence taken for that
claim through the conductors' own
:class:`~flowkit.conductors._fencing.FencedBackend`. A conductor cannot claim
the job meanwhile, and a writer whose claim is older cannot write the flow
detail. When the run ends the job ends as a conductor would end it: consumed
once the flow succeeded or reverted for a task's failure, given back otherwise
(:func:`_release`). A resume killed mid-run leaves its claim to lapse as a
dead conductor's: the Redis board stops renewing it, the ZooKeeper session ends.

``--force`` is the way past all of it (a board out of reach): no claim, no
fence. The check costs nothing for a flow ``flowkit run`` ran: it records no job.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from flowkit._utils.text import log_safe
from flowkit.cli._common import CliError, one_line
from flowkit.conductors._job_record import JOB_KEY, JobRecord

if TYPE_CHECKING:
    from flowkit.conductors._fencing import ClaimFence, FencedBackend
    from flowkit.jobs.base import Claim, Job, JobBoard
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import FlowDetail

__all__ = ["JOB_KEY", "HeldJob", "JobRecord", "claimant", "hold_job"]

#: How every refusal ends: the way past it, for an operator who knows better.
_OR_FORCE = "or --force if you are sure no conductor runs it"


def claimant() -> str:
    """The name a resume claims a job under: ``flowkit flows resume@HOST:PID``, as a conductor's entity."""
    return f"flowkit flows resume@{socket.gethostname()}:{os.getpid()}"


@dataclass
class HeldJob:
    """A job a resume holds, and the persistence backend fenced for its claim.

    Attributes:
        backend: the persistence backend every write of the resume goes
            through, fenced for the resume's claim (its
            :class:`~flowkit.conductors._fencing.ClaimFence` names the board,
            the job and the claim: :attr:`board`, :attr:`job`, :attr:`claim`).
        flow: the flow detail, read under the fence.
        engine: the engine that runs the flow, once loaded (:func:`hold_job`
            ends the job by its flow's state).
    """

    backend: FencedBackend
    flow: FlowDetail
    engine: Any = None  # an engine of any kind (engines.load's)

    @property
    def board(self) -> JobBoard:
        """The job's board, connected."""
        return self.backend.fence.board

    @property
    def job(self) -> Job:
        """The job."""
        return self.backend.fence.job

    @property
    def claim(self) -> Claim:
        """The resume's claim of the job."""
        return self.backend.fence.claim


class _GivenBoard(NamedTuple):
    """The board ``--board`` names (not connected), and its URL as messages show it (password masked)."""

    board: JobBoard
    shown: str


@contextlib.contextmanager
def hold_job(
    flow: FlowDetail, record: JobRecord, board_url: str | None, backend: Backend
) -> Iterator[HeldJob | None]:
    """Hold ``record``'s job while the block runs; ``None`` when the job is gone from its board.

    A job gone from the board (consumed, trashed) has no holder and no
    conductor can claim it: the resume goes on without a claim.

    Args:
        flow: the flow detail to be resumed (named in the messages).
        record: the job the flow's metadata names.
        board_url: ``--board``: ``None`` when not given.
        backend: the persistence backend holding the flow detail.

    The board given is compared with the recorded one by what identifies a
    board (:func:`~flowkit.jobs.backends._address.board_address`: its kind,
    servers, database and namespace or path, defaults filled in), not as text:
    ``redis://h:6379`` is ``redis://h:6379/0``, with its password or without.

    Raises:
        CliError: no ``--board`` given, another board given, the job is
            claimed, or its flow detail is run by another job still claimed
            (status 2); the board cannot be read, or the claim was lost
            (status 1).
    """
    from flowkit.conductors._fencing import FencedBackend
    from flowkit.jobs.base import ClaimLost
    from flowkit.persistence.backends._urls import mask_url

    board, shown = _board_for(flow, record, board_url)
    with contextlib.closing(board):
        fence = _claimed(board, flow, record, shown)
        if fence is None:  # gone from the board, before or while it was claimed
            yield None
            return
        with contextlib.closing(FencedBackend(backend, fence)) as fenced:
            held = HeldJob(fenced, _take(fenced, flow, record, shown))
            try:
                yield held
            except ClaimLost as lost:
                _give_back(fence, "claim counted as lost", failed=True)
                raise CliError(
                    f"the resume of flow '{flow.name}' lost its claim of job {record.uuid} and stopped"
                    f" writing: {mask_url(one_line(lost))}",
                    status=1,
                ) from lost
            except BaseException:
                _give_back(fence, "flowkit flows resume stopped before its flow ended")
                raise
            _release(held, shown)


def _board_for(flow: FlowDetail, record: JobRecord, board_url: str | None) -> _GivenBoard:
    """The board ``board_url`` names (not connected), once it is shown to be ``record``'s.

    Raises:
        CliError: no board given, or not the recorded one (status 2).
    """
    from flowkit import exceptions as exc
    from flowkit.jobs import backends
    from flowkit.jobs.backends._address import board_address
    from flowkit.persistence.backends._urls import mask_url

    if board_url is None:
        raise CliError(
            f"flow '{flow.name}' ({flow.uuid}) is run by a conductor for {record.describe()}; resuming it"
            " while a conductor holds the job runs its tasks twice: pass --board URL for the resume to"
            f" hold the job while it runs, {_OR_FORCE}"
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
        return _GivenBoard(backends.fetch("flowkit", {"board": board_url}), masked)
    except (exc.NotFound, ValueError) as err:
        raise CliError(f"--board {masked}: {one_line(err)}") from err


def _claimed(board: JobBoard, flow: FlowDetail, record: JobRecord, shown: str) -> ClaimFence | None:
    """Connect ``board`` and claim ``record``'s job for the resume; ``None`` when the job is gone.

    Raises:
        CliError: the board cannot be read (status 1), or someone else holds
            the job (status 2).
    """
    from flowkit import exceptions as exc
    from flowkit.conductors._fencing import ClaimFence
    from flowkit.persistence.backends._urls import mask_url

    try:
        board.connect()
        job = board.find_job(record.uuid)
        claim = None if job is None else _claim(board, job, flow, record, shown)
    except exc.JobFailure as err:
        raise CliError(f"cannot read board {shown}: {mask_url(one_line(err))}", status=1) from err
    if job is None or claim is None:
        return None
    return ClaimFence(board, job, claim)


def _take(fenced: FencedBackend, flow: FlowDetail, record: JobRecord, shown: str) -> FlowDetail:
    """Take the flow detail's write fence for the resume's claim; the flow detail read under it.

    Anything that stops the take gives the job back first: it is not kept
    from its conductors.

    Raises:
        CliError: another job still claimed runs the flow detail (status 2),
            or the claim could not be confirmed (status 1).
    """
    from flowkit import exceptions as exc
    from flowkit.conductors._fencing import FlowDetailHeld
    from flowkit.persistence.backends._urls import mask_url

    fence = fenced.fence
    try:
        return fenced.take(flow.uuid)
    except FlowDetailHeld as held_by:
        _give_back(fence, f"flow detail {flow.uuid} is run by job {held_by.holder}")
        raise CliError(
            f"flow '{flow.name}' ({flow.uuid}) is being run for job {held_by.holder}, claimed by"
            f" '{log_safe(held_by.claim.owner)}' on {record.board} board {shown}: resume it once"
            f" that job is no longer claimed, {_OR_FORCE}"
        ) from held_by
    except exc.JobFailure as err:  # ClaimLost among them
        _give_back(fence, "its claim could not be confirmed")
        raise CliError(f"job {record.uuid}: {mask_url(one_line(err))}", status=1) from err
    except BaseException:  # the store failed, or Ctrl-C: the job is not kept from its conductors
        _give_back(fence, "flowkit flows resume could not read the flow")
        raise


def _claim(board: JobBoard, job: Job, flow: FlowDetail, record: JobRecord, shown: str) -> Claim | None:
    """Claim ``job`` for the resume; ``None`` when it left the board meanwhile.

    Raises:
        CliError: someone else holds it (status 2), named.
    """
    from flowkit import exceptions as exc

    try:
        return board.claim(job, claimant())
    except exc.NotFound:
        return None
    except exc.UnclaimableJob as err:
        current = board.claim_of(job.uuid)
        if current is None:  # consumed between the listing and the claim
            raise CliError(f"job {record.uuid} on board {shown} cannot be claimed: {one_line(err)}") from err
        raise CliError(
            f"job {record.uuid} is claimed by '{log_safe(current.owner)}' on {record.board} board {shown}:"
            f" a live conductor runs flow '{flow.name}'; resume it once that conductor has stopped and"
            f" its claim expired, {_OR_FORCE}"
        ) from err


def _release(held: HeldJob, shown: str) -> None:
    """End the job as a conductor would end it after this run.

    Consumed when the flow succeeded, or reverted for failures a conductor
    consumes the job for (a task's own); given back otherwise: reverted for
    failures that ask for another try (``ExecutionFailure``,
    ``StorageFailure``: counted as a failed attempt, as a conductor does),
    or left unfinished (failed to revert, suspended), for a conductor to
    take up.

    Raises:
        CliError: the board refused (the claim was lost meanwhile) or could
            not be reached (status 1).
    """
    from flowkit import exceptions as exc
    from flowkit import states
    from flowkit.conductors.backends.impl_executor import consumed_when_reverted
    from flowkit.persistence.backends._urls import mask_url

    engine, fence = held.engine, held.backend.fence
    state = None if engine is None else engine.storage.get_flow_state()
    failed = state == states.REVERTED
    try:
        if state == states.SUCCESS or (failed and consumed_when_reverted(engine)):
            fence.board.consume(fence.job, fence.claim.owner, claim=fence.claim)
        else:
            _abandon(
                fence,
                f"the flow ended {state}" if failed else f"the flow was left {state or 'unrun'}",
                failed,
            )
    except (exc.JobFailure, exc.NotFound) as err:
        raise CliError(
            f"job {fence.job.uuid} on board {shown}: the resume could not end its claim:"
            f" {mask_url(one_line(err))} (a claim the board still holds lapses as a dead conductor's)",
            status=1,
        ) from err


def _abandon(fence: ClaimFence, reason: str, failed: bool = False) -> None:
    """Give ``fence``'s job back under its claim, saying why (``flowkit flows resume: REASON``)."""
    fence.board.abandon(
        fence.job,
        fence.claim.owner,
        reason=f"flowkit flows resume: {reason}",
        failed=failed,
        claim=fence.claim,
    )


def _give_back(fence: ClaimFence, reason: str, failed: bool = False) -> None:
    """Give ``fence``'s job back if its claim still holds it; a refused or unreachable board lets it lapse."""
    from flowkit import exceptions as exc

    with contextlib.suppress(exc.JobFailure, exc.NotFound):
        _abandon(fence, reason, failed)
