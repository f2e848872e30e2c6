"""A persistence backend that refuses writes once the writer's job claim is lost.

A conductor runs a job's flow with its persistence backend wrapped in a
:class:`FencedBackend`. Two layers keep a conductor whose claim was lost (a
long GC pause, SIGSTOP, a frozen VM past the claim's expiry) from writing
over the progress of the conductor that took the job over:

1. **In the store** (backends with write fences, ``Connection.supports_fences``:
   every bundled backend). Before reading the job's flow detail the conductor
   *takes its fence* with the job's uuid and its claim's token
   (:meth:`~flowkit.persistence.base.Connection.take_fence`, one transaction
   that also reads the flow and the fence it replaced), and every progress write carries that fence
   (:meth:`~flowkit.persistence.base.Connection.save_flow_progress_fenced`):
   the database compares it as part of the write. A later claim of the job
   has a larger token and takes the fence before it reads anything, so from
   then on the earlier holder's writes are refused whenever they arrive,
   including a write already past every check when its process froze. What
   the earlier holder wrote before the fence moved is what the new holder
   reads: the two never interleave. Nothing is left open.

   A fence held by *another job* (two jobs posted for one flow detail) is
   taken over only once that job is no longer claimed on the board (done,
   given back, set aside, its claim lapsed), and then only that very fence
   (a compare-and-set in the store). While the other job is claimed the
   flow detail stays its own and :meth:`FencedBackend.take` raises
   :class:`FlowDetailHeld`: taking it over would refuse every write of a
   live run, counted as a lost claim, while both ran the flow's tasks, and
   the first job, claimed again, would take it back the same way.
2. **On the board**: a write first asks the board whether the claim is still
   current and raises :class:`~flowkit.jobs.base.ClaimLost` instead of
   writing when it is not, so a conductor stops writing soon after losing its
   claim even when nobody took the job over. With store fences this is a
   second line, not the safety, and costs no round trip while the board knows
   the claim holds without asking (:meth:`~flowkit.jobs.base.JobBoard.holds_locally`:
   the Redis board within half an expiry of claiming or renewing it, the
   ZooKeeper board within a second of claiming or confirming it in the same
   session).

Backends without write fences (third-party ones whose connections say
``supports_fences = False``) get the board check before every write, one
round trip each. What that cannot close is a pause *between* the board's
answer and the write reaching the store: an answer that took longer than the
claim's expiry is refused, but a pause of the wrong length at exactly that
point lets one stale write land after the new holder read the flow
(``tests/conductors/test_fencing.py`` forces that interleaving on the
bundled backends, where the store refuses it).
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flowkit import exceptions as exc
from flowkit.jobs.base import Claim, ClaimLost, Job, JobBoard
from flowkit.persistence.base import Backend, Connection, FenceRefused, FenceTaken, WriteFence
from flowkit.persistence.models import AtomDetail, FlowDetail, LogBook

__all__ = ["ClaimFence", "FencedBackend", "FlowDetailHeld"]

#: Seconds between two tries to reach a board that did not answer.
UNREACHABLE_RETRY = 0.05
#: Seconds to keep trying when claims do not expire on a clock (half of twice this).
UNREACHABLE_PATIENCE = 5.0
#: Times a fence of another job found no longer claimed is tried to be taken over, when it
#: keeps moving to yet another job's claim in between.
TAKE_OVER_TRIES = 5


class FlowDetailHeld(exc.UnclaimableJob):
    """A job's flow detail is fenced for another job that is still claimed: the job cannot run it now.

    Attributes:
        job: the uuid of the job that was to run the flow detail.
        flow: the flow detail's uuid.
        holder: the uuid of the job the flow detail is fenced for.
        claim: that job's current claim.
    """

    def __init__(self, message: str, *, job: str, flow: str, holder: str, claim: Claim) -> None:
        super().__init__(message)
        self.job = job
        self.flow = flow
        self.holder = holder
        self.claim = claim


class ClaimFence:
    """Checks that ``claim`` still holds ``job`` on ``board``.

    Args:
        board: the jobboard the job is on.
        job: the claimed job.
        claim: the claim (owner and token) the writer holds.
        expiry: seconds a confirmation of the claim stays good locally, or
            ``None`` when the board's claims do not expire on a clock.
        clock: monotonic seconds (injected by tests).
        sleep: waits between tries to reach a board that did not answer.
    """

    def __init__(
        self,
        board: JobBoard,
        job: Job,
        claim: Claim,
        expiry: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.board = board
        self.job = job
        self.claim = claim
        self._expiry = expiry
        self._clock = clock
        self._sleep = sleep
        self.lost: ClaimLost | None = None

    @property
    def write_fence(self) -> WriteFence:
        """The store-side fence of this claim: the job's uuid and the claim's token."""
        return WriteFence(self.job.uuid, self.claim.token)

    def check_cheaply(self) -> None:
        """Like :meth:`check`, but no round trip when the board knows the claim holds.

        (:meth:`~flowkit.jobs.base.JobBoard.holds_locally`: a board that
        made or confirmed the claim so recently that it cannot have lapsed.)
        """
        if self.lost is None and self.board.holds_locally(self.job, self.claim):
            return
        self.check()

    def check(self) -> None:
        """Raise :class:`ClaimLost` unless the board says the claim is still current.

        Once lost, a claim stays lost: every later check raises at once.
        """
        if self.lost is not None:
            raise self.lost
        asked_at = self._clock()
        # A board that cannot answer may come back (a reconnecting client); give it
        # a moment, but never longer than half the claim's life, then assume the worst.
        patience = (self._expiry if self._expiry is not None else UNREACHABLE_PATIENCE * 2) / 2
        while True:
            try:
                self.board.check_claim(self.job, self.claim)
                break
            except ClaimLost as lost:
                self.lost = lost
                raise
            except exc.JobFailure as failure:
                if self._clock() - asked_at < patience:
                    self._sleep(UNREACHABLE_RETRY)
                    continue
                self.lost = self._lost(f"cannot be confirmed, so it counts as lost: {failure}")
                raise self.lost from failure
        if self._expiry is not None and self._clock() - asked_at > self._expiry:
            # The answer took longer than a claim lasts: it may be stale already.
            why = f"the board's answer took longer than the claim's expiry ({self._expiry}s)"
            self.lost = self._lost(why)
            raise self.lost

    def refused(self, refusal: FenceRefused) -> ClaimLost:
        """The claim counts as lost from now on: the store gave its fence to someone else."""
        self.lost = self._lost(f"the store refused its write: {refusal}")
        return self.lost

    def _lost(self, why: str) -> ClaimLost:
        return ClaimLost(
            f"claim of {self.claim.owner!r} (token {self.claim.token}) on job {self.job.uuid}: {why}",
            job=self.job.uuid,
            claim=self.claim,
        )


class FencedBackend(Backend):
    """Wraps ``inner`` so that writes pass ``fence`` (see the module docstring).

    Reads go straight through. A conductor makes one per job and closes it
    when the job ends: that closes every connection it handed out (an engine
    may keep one open after its run), while the wrapped backend, shared by
    the conductor's jobs, stays open.
    """

    def __init__(self, inner: Backend, fence: ClaimFence) -> None:
        super().__init__(inner.conf)
        self.inner = inner
        self.fence = fence
        self._handed_out: list[_FencedConnection] = []
        self._lock = threading.Lock()
        #: Flow details whose store-side fence this backend took (their writes carry it).
        self.fenced_flows: set[str] = set()
        #: Of those, the ones an earlier claim of this same job had fenced: this job ran them before.
        self.run_before: set[str] = set()

    def take(self, fd_uuid: str) -> FlowDetail:
        """Read flow detail ``fd_uuid``, first taking its store-side fence when the store has them.

        The fence of another job is taken over only once the board says that
        job is no longer claimed (see the module docstring).

        Raises:
            ClaimLost: the claim is lost, or the store's fence went to a later claim.
            FlowDetailHeld: another job, still claimed, holds the flow detail's fence.
            JobFailure: the board could not say whether that other job is claimed.
            NotFound: no such flow detail.
        """
        with self.inner.get_connection() as conn:
            if not conn.supports_fences:
                self.fence.check()
                return conn.get_flow_details(fd_uuid)
            # A claim lost meanwhile is caught by the store (a later claim holds the fence)
            # or by the board check before the first write; no round trip needed here.
            self.fence.check_cheaply()
            flow_detail, replaced = self._fence(conn, fd_uuid)
        # Only this job's claims write fences held by this job, and this one holds the claim
        # now: a fence of this job with a smaller token is an earlier claim's (this claim's own,
        # taken again when the flow is read anew, says nothing about earlier runs).
        earlier = (
            replaced is not None
            and replaced.holder == self.fence.job.uuid
            and replaced.token < self.fence.claim.token
        )
        with self._lock:
            self.fenced_flows.add(fd_uuid)
            if earlier:
                self.run_before.add(fd_uuid)
        return flow_detail

    def _fence(self, conn: Connection, fd_uuid: str) -> FenceTaken:
        """Take the flow detail's fence: free or ours, else that of another job found over.

        Returns the flow read under the fence and the fence it replaced, which
        the bundled backends read in the step that takes the fence.
        """
        if not _takes_take_over(conn):
            # A third-party backend written before ``take_over=``: its fence_flow takes over
            # any other job's fence, as every backend's did.
            before = _fence_or_none(conn, fd_uuid)
            try:
                return FenceTaken(conn.fence_flow(fd_uuid, self.fence.write_fence), before)
            except FenceRefused as refusal:
                raise self.fence.refused(refusal) from refusal
        take_over: bool | WriteFence = False
        for _ in range(TAKE_OVER_TRIES):
            try:
                return conn.take_fence(fd_uuid, self.fence.write_fence, take_over=take_over)
            except FenceRefused as refusal:
                current = refusal.current
                if current is None or current.holder == self.fence.job.uuid:
                    raise self.fence.refused(refusal) from refusal  # a later claim of this job
                last = refusal
            # Another job's: taken over only if that job is not claimed now, and only that fence
            # (it may be claimed and fenced anew in between: the store then refuses, and we ask again).
            held = self.fence.board.claim_of(current.holder)
            if held is not None:
                job = self.fence.job.uuid
                raise FlowDetailHeld(
                    f"flow detail {fd_uuid} of job {job} is being run by job {current.holder}, "
                    f"claimed by {held.owner!r} (token {held.token}): job {job} cannot run it meanwhile",
                    job=job,
                    flow=fd_uuid,
                    holder=current.holder,
                    claim=held,
                )
            take_over = current
        raise self.fence.refused(last)

    def get_connection(self) -> Connection:
        made = _FencedConnection(self, self.inner.get_connection())
        with self._lock:
            self._handed_out = [c for c in self._handed_out if not c.closed]
            self._handed_out.append(made)
        return made

    def close(self) -> None:
        """Close the connections handed out and not closed yet (not the wrapped backend)."""
        with self._lock:
            handed_out, self._handed_out = self._handed_out, []
        for conn in handed_out:
            if not conn.closed:
                conn.close()


def _fence_or_none(conn: Connection, fd_uuid: str) -> WriteFence | None:
    """The flow detail's fence now; None also from a third-party store that cannot say.

    Only this job's claims write fences held by this job, and this one holds
    the claim now: a fence of this job read here is an earlier claim's.
    """
    try:
        return conn.flow_fence(fd_uuid)
    except NotImplementedError:
        return None


def _takes_take_over(conn: Connection) -> bool:
    """Whether ``conn.fence_flow`` accepts ``take_over=`` (every bundled backend's does).

    Read from the bound method, so a connection that hands its calls on
    (``__getattr__``) answers for the one it wraps. Once per job: cheap.
    """
    try:
        parameters = inspect.signature(conn.fence_flow).parameters
    except (TypeError, ValueError):  # no signature to read: assume the current API
        return True
    return "take_over" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


class _FencedConnection(Connection):
    def __init__(self, backend: FencedBackend, inner: Connection) -> None:
        super().__init__(backend)
        self._fenced = backend
        self._inner = inner
        self._check = backend.fence.check
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self._inner.close()

    def upgrade(self) -> None:
        self._check()
        self._inner.upgrade()

    def validate(self) -> None:
        self._inner.validate()

    def clear_all(self) -> None:
        self._check()
        self._inner.clear_all()

    def save_logbook(self, book: LogBook) -> LogBook:
        self._check()
        return self._inner.save_logbook(book)

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> LogBook:
        return self._inner.get_logbook(book_uuid, lazy=lazy)

    def get_logbooks(self, lazy: bool = False) -> Iterator[LogBook]:
        return self._inner.get_logbooks(lazy=lazy)

    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[FlowDetail]:
        return self._inner.get_flows_for_book(book_uuid, lazy=lazy)

    def get_flow_details(self, fd_uuid: str, lazy: bool = False) -> FlowDetail:
        return self._inner.get_flow_details(fd_uuid, lazy=lazy)

    def get_atom_details(self, ad_uuid: str) -> AtomDetail:
        return self._inner.get_atom_details(ad_uuid)

    def get_atoms_for_flow(self, fd_uuid: str) -> Iterator[AtomDetail]:
        return self._inner.get_atoms_for_flow(fd_uuid)

    def update_flow_details(self, flow_detail: FlowDetail) -> FlowDetail:
        self._check()
        return self._inner.update_flow_details(flow_detail)

    def update_atom_details(self, atom_detail: AtomDetail) -> AtomDetail:
        self._check()
        return self._inner.update_atom_details(atom_detail)

    def destroy_logbook(self, book_uuid: str) -> None:
        self._check()
        self._inner.destroy_logbook(book_uuid)

    def save_flow_progress(
        self, flow_detail: FlowDetail, atom_details: Sequence[AtomDetail], flow_changed: bool = True
    ) -> None:
        fence = self._fenced.fence
        if flow_detail.uuid not in self._fenced.fenced_flows:
            fence.check()
            self._inner.save_flow_progress(flow_detail, atom_details, flow_changed)
            return
        # The store compares the fence as part of the write; the board check is what
        # stops a conductor whose claim lapsed (with nobody taking the job over yet).
        fence.check_cheaply()
        try:
            self._inner.save_flow_progress_fenced(flow_detail, atom_details, flow_changed, fence.write_fence)
        except FenceRefused as refusal:
            raise fence.refused(refusal) from refusal

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (statistics, helpers) read through unfenced.
        return getattr(self._inner, name)
