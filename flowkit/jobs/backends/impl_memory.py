"""A jobboard in this process's memory: for tests and single-host use.

Every conductor sharing the board object shares its jobs; nothing survives
the process. The board is open (``connected``) from the start, having nothing
to connect to; :meth:`MemoryJobBoard.close` shuts it as the other boards'
does, every read and write then failing with
:class:`~flowkit.exceptions.JobFailure` until :meth:`MemoryJobBoard.connect`
opens it again (its jobs kept). Claims last until given back unless an ``expiry`` is given
(per claim or as the board's ``claim_expiry`` option), measured on the
board's clock (injectable, so expiry is testable without sleeping).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit import states
from flowkit.jobs import _posting
from flowkit.jobs._board import ListingJobBoard
from flowkit.jobs._job import BoardJob
from flowkit.jobs.base import (
    POSTED,
    REMOVAL,
    Attempt,
    AttemptEnd,
    Claim,
    Job,
    JobBoardIterator,
    JobPriority,
    _Waiter,
    check_claim_expiry,
    check_who,
    expiry_extension_ms,
    iter_sorted,
    lost_claim,
    wait_for_jobs,
)

if TYPE_CHECKING:
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import LogBook

__all__ = ["MemoryJobBoard"]

LOG = logging.getLogger(__name__)


@dataclass
class _Entry:
    job: BoardJob
    claim: Claim | None = None
    expires_at: float | None = None
    attempts: list[Attempt] = field(default_factory=list)


class MemoryJobBoard(ListingJobBoard):
    """A thread-safe board held in memory.

    Args:
        name: the board's name.
        conf: options; ``claim_expiry`` (seconds) makes claims expire unless renewed.
        persistence: backend the jobs' logbooks are loaded from.
        clock: monotonic seconds (injected by tests).
    """

    _log = LOG

    def __init__(
        self,
        name: str,
        conf: dict[str, Any] | None = None,
        persistence: Backend | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, dict(conf or {}))
        self._persistence = persistence
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._trash: list[dict[str, Any]] = []
        self._sequence = itertools.count(1)
        self._tokens = itertools.count(1)
        self._connected = True  # nothing to connect to: open until closed
        self._waiter = _Waiter()
        expiry = self._conf.get("claim_expiry")
        # Checked as a claim's own expiry is: a NaN here made every claim last for ever.
        self._default_expiry = None if expiry is None else check_claim_expiry(self, float(expiry), "any job")

    # -- connection ------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Open the board again after :meth:`close` (its jobs are kept); harmless when open."""
        self._connected = True

    def close(self) -> None:
        """Shut the board: reads and writes fail, as on a closed Redis or ZooKeeper board."""
        self._connected = False

    def _open(self) -> None:
        """Refuse to serve while closed, as the other boards do once closed.

        Raises:
            JobFailure: the board was closed (and not connected again).
        """
        if not self._connected:
            raise exc.JobFailure(f"memory jobboard {self.name!r} is not connected (it was closed)")

    def register_entity(self, entity: Any) -> None:
        """Nothing to do: a memory board lists no entities."""

    # -- reading ---------------------------------------------------------
    def _live(self, job_uuid: str) -> _Entry | None:
        """The entry of ``job_uuid`` with an expired claim dropped (caller holds the lock)."""
        entry = self._entries.get(job_uuid)
        expires_at = None if entry is None or entry.claim is None else entry.expires_at
        if entry is not None and expires_at is not None and self._clock() >= expires_at:
            self._end_attempt(entry, AttemptEnd.LOST, "claim expired")
            entry.claim = None
            entry.expires_at = None
        return entry

    def _end_attempt(self, entry: _Entry, end: AttemptEnd, reason: str | None) -> None:
        if entry.attempts and entry.attempts[-1].end is AttemptEnd.OPEN:
            entry.attempts[-1] = replace(entry.attempts[-1], end=end, reason=reason)

    def _job_state(self, job: BoardJob) -> str:
        self._open()
        with self._lock:
            entry = self._live(job.uuid)
            if entry is None:
                return states.COMPLETE
            return states.UNCLAIMED if entry.claim is None else states.CLAIMED

    @property
    def job_count(self) -> int:
        self._open()
        with self._lock:
            return len(self._entries)

    def _fetch(self, ensure_fresh: bool) -> list[BoardJob]:
        self._open()
        with self._lock:
            return iter_sorted([e.job for e in self._entries.values()])

    def wait(self, timeout: float | None = None) -> JobBoardIterator:
        return wait_for_jobs(self, timeout, self._waiter, clock=self._clock)

    def current_claim(self, job: Job) -> Claim | None:
        self._open()
        with self._lock:
            entry = self._live(job.uuid)
            return None if entry is None else entry.claim

    def claim_of(self, job_uuid: str) -> Claim | None:
        self._open()
        with self._lock:
            entry = self._live(job_uuid)
            return None if entry is None else entry.claim

    def attempts(self, job: Job) -> list[Attempt]:
        self._open()
        with self._lock:
            entry = self._live(job.uuid)
            return [] if entry is None else list(entry.attempts)

    def trashed(self) -> list[dict[str, Any]]:
        self._open()
        with self._lock:
            return [dict(t) for t in self._trash]

    # -- writing ---------------------------------------------------------
    def post(
        self,
        name: str,
        book: LogBook | None = None,
        details: dict[str, Any] | None = None,
        priority: JobPriority | str = JobPriority.NORMAL,
    ) -> BoardJob:
        self._open()
        with self._lock:
            posting = _posting.Posting.make(
                str(uuidlib.uuid4()), name, next(self._sequence), book, details, priority
            )
            job = BoardJob(self, posting, backend=self._persistence, book=book)
            # Readers of the board load the book afresh from persistence (as on the
            # other boards), not the poster's object, which the run does not update.
            listed = job if self._persistence is None else BoardJob(self, posting, backend=self._persistence)
            self._entries[posting.uuid] = _Entry(listed)
        self._waiter.wake()
        self._notify(POSTED, job)
        return job

    def _entry_of(self, job: Job, action: str) -> _Entry:
        self._open()
        entry = self._live(job.uuid)
        if entry is None:
            raise exc.NotFound(f"job {job.uuid} is not on board {self.name!r} (cannot {action} it)")
        return entry

    def _held_entry(self, job: Job, who: str, action: str, claim: Claim | None) -> _Entry:
        entry = self._entry_of(job, action)
        if claim is not None and entry.claim != claim:
            raise lost_claim(self, job, claim, entry.claim)
        if entry.claim is None:
            # NotFound, as TaskFlow raises for a job whose owner it cannot find.
            raise exc.NotFound(f"Can not {action} job {job.uuid} which we can not determine the owner of")
        if entry.claim.owner != who:
            raise exc.JobFailure(
                f"Can not {action} job {job.uuid} which is not owned by {who} "
                f"(it is actively owned by {entry.claim.owner})"
            )
        return entry

    @check_who
    def claim(self, job: Job, who: str, expiry: float | None = None) -> Claim:
        check_claim_expiry(self, expiry, f"job {job.uuid}")
        with self._lock:
            entry = self._entry_of(job, "claim")
            if entry.claim is not None:
                raise exc.UnclaimableJob(f"Job {job.uuid} already claimed by {entry.claim.owner}")
            claim = Claim(who, next(self._tokens))
            seconds = expiry if expiry is not None else self._default_expiry
            entry.claim = claim
            entry.expires_at = None if seconds is None else self._clock() + seconds
            self._end_attempt(entry, AttemptEnd.LOST, "claim lost")
            entry.attempts.append(Attempt(who, claim.token, time.time()))
            return claim

    def renew(self, job: Job, claim: Claim, expiry: float) -> bool:
        """Make ``claim`` expire ``expiry`` seconds from now; ``False`` if it is no longer current.

        As the Redis board's ``extend_expiry`` (TaskFlow's): no whole
        millisecond (0 or less) ends the claim now.

        Raises:
            ValueError: ``expiry`` is NaN or infinite (nothing is changed).
        """
        ms = expiry_extension_ms(self, expiry, f"job {job.uuid}")
        self._open()
        with self._lock:
            entry = self._live(job.uuid)
            if entry is None or entry.claim != claim:
                return False
            entry.expires_at = self._clock() + ms / 1000.0
            self._live(job.uuid)  # ends it now if no time is left
            return True

    @check_who
    def consume(self, job: Job, who: str, claim: Claim | None = None) -> None:
        with self._lock:
            entry = self._held_entry(job, who, "consume", claim)
            del self._entries[job.uuid]
        self._notify(REMOVAL, entry.job)

    @check_who
    def abandon(
        self,
        job: Job,
        who: str,
        reason: str | None = None,
        failed: bool = False,
        claim: Claim | None = None,
    ) -> None:
        with self._lock:
            entry = self._held_entry(job, who, "abandon", claim)
            self._end_attempt(entry, AttemptEnd.FAILED if failed else AttemptEnd.ABANDONED, reason)
            entry.claim = None
            entry.expires_at = None
        self._waiter.wake()

    @check_who
    def trash(self, job: Job, who: str, reason: str | None = None, claim: Claim | None = None) -> None:
        with self._lock:
            entry = self._held_entry(job, who, "trash", claim)
            self._end_attempt(entry, AttemptEnd.ABANDONED, reason)
            del self._entries[job.uuid]
            self._trash.append(
                {
                    **entry.job.posting.to_dict(),
                    "reason": reason,
                    "attempts": [a.to_dict() for a in entry.attempts],
                }
            )
        self._notify(REMOVAL, entry.job)
