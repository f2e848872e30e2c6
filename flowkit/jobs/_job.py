"""The job object every board hands out: a posting plus a live view of its state."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from flowkit.jobs._posting import Posting
from flowkit.jobs.base import Job, JobBoard

if TYPE_CHECKING:
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import LogBook

__all__ = ["BoardJob"]


class _StateReader(Protocol):
    def _job_state(self, job: BoardJob) -> str: ...


class BoardJob(Job):
    """A job as read from (or posted to) a board.

    Its ``state`` asks the board each time; everything else is the posting.
    """

    def __init__(
        self,
        board: JobBoard,
        posting: Posting,
        backend: Backend | None = None,
        book: LogBook | None = None,
    ) -> None:
        super().__init__(
            board,
            posting.name,
            posting.uuid,
            details=posting.details,
            backend=backend,
            book=book,
            book_data=posting.book,
            priority=posting.priority,
            created_on=posting.created_on,
        )
        self.posting = posting

    @property
    def sequence(self) -> int:
        """The job's posting order on its board."""
        return self.posting.sequence

    @property
    def created_on(self) -> datetime:
        return self.posting.created_on

    @property
    def state(self) -> str:
        reader: _StateReader = self._board  # type: ignore[assignment]
        return reader._job_state(self)
