"""A persistence backend that refuses writes once the writer's job claim is lost.

A conductor runs a job's flow with its persistence backend wrapped in a
:class:`FencedBackend`: every write (the engine's progress flushes, logbook
and detail updates) first asks the jobboard whether the conductor's claim,
identified by its fencing token, is still the job's current one, and raises
:class:`~flowkit.jobs.base.ClaimLost` instead of writing when it is not. A
conductor that was paused past its claim's expiry (a long GC pause, SIGSTOP,
a frozen VM) and wakes up after another conductor took the job over can
therefore not overwrite the new owner's progress.

What it costs: one round trip to the board per write (the engine writes once
per atom transition batch). What it cannot close on its own: a pause *between*
the board's answer and the write reaching the store. The check refuses an
answer that took longer than the claim's expiry (it may be stale already),
which leaves only the write itself; closing that window entirely needs the
store to compare the token as part of the write (a conditional write), which
the persistence API does not offer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flowkit import exceptions as exc
from flowkit.jobs.base import Claim, ClaimLost, Job, JobBoard
from flowkit.persistence.base import Backend, Connection
from flowkit.persistence.models import AtomDetail, FlowDetail, LogBook

__all__ = ["ClaimFence", "FencedBackend"]

#: Seconds between two tries to reach a board that did not answer.
UNREACHABLE_RETRY = 0.05
#: Seconds to keep trying when claims do not expire on a clock (half of twice this).
UNREACHABLE_PATIENCE = 5.0


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

    def check(self) -> None:
        """Raise :class:`ClaimLost` unless the claim is still current.

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
                self.lost = ClaimLost(
                    f"claim of {self.claim.owner!r} (token {self.claim.token}) on job {self.job.uuid} "
                    f"cannot be confirmed, so it counts as lost: {failure}",
                    job=self.job.uuid,
                    claim=self.claim,
                )
                raise self.lost from failure
        if self._expiry is not None and self._clock() - asked_at > self._expiry:
            # The answer took longer than a claim lasts: it may be stale already.
            self.lost = ClaimLost(
                f"claim of {self.claim.owner!r} (token {self.claim.token}) on job {self.job.uuid}: "
                f"the board's answer took longer than the claim's expiry ({self._expiry}s)",
                job=self.job.uuid,
                claim=self.claim,
            )
            raise self.lost


class FencedBackend(Backend):
    """Wraps ``inner`` so that every write first passes ``fence.check()``.

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

    def get_connection(self) -> Connection:
        made = _FencedConnection(self, self.inner.get_connection(), self.fence.check)
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


class _FencedConnection(Connection):
    def __init__(self, backend: Backend, inner: Connection, check: Callable[[], None]) -> None:
        super().__init__(backend)
        self._inner = inner
        self._check = check
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
        self._check()
        self._inner.save_flow_progress(flow_detail, atom_details, flow_changed)

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (statistics, helpers) read through unfenced.
        return getattr(self._inner, name)
