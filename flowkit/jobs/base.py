"""Jobs and jobboards: TaskFlow's interfaces, plus claims that carry a fencing token.

A *job* names a piece of work (usually one flow detail in a logbook) that one
entity at a time may own. A *jobboard* is where jobs are posted, claimed,
consumed (done), abandoned (given back) and trashed (set aside). The
interfaces and their semantics are TaskFlow's, so conductors and operator
tools written for it work unchanged.

What flowkit adds, every board implementing it the same way:

- :meth:`JobBoard.claim` returns a :class:`Claim` whose ``token`` grows with
  every claim made on the board. :meth:`JobBoard.check_claim` raises
  :class:`ClaimLost` unless that claim is still the job's current one, which
  is how a conductor refuses to write after its claim expired or was taken
  over (``flowkit.conductors``).
- Each job keeps its history of :class:`Attempt` records (who claimed it,
  how each claim ended), so a job that keeps failing can be set aside
  instead of cycling between conductors forever.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import numbers
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from flowkit import exceptions as exc
from flowkit import states
from flowkit._utils.text import log_safe
from flowkit.types import notifier

if TYPE_CHECKING:
    from flowkit.persistence.base import Backend
    from flowkit.persistence.models import LogBook

__all__ = [
    "MIN_CLAIM_EXPIRY",
    "POSTED",
    "REMOVAL",
    "Attempt",
    "AttemptEnd",
    "Claim",
    "ClaimLost",
    "Claimed",
    "Job",
    "JobBoard",
    "JobBoardIterator",
    "JobPriority",
    "NotifyingJobBoard",
    "check_applicant",
    "check_claim_expiry",
    "check_who",
    "expiry_extension_ms",
]

LOG = logging.getLogger(__name__)

POSTED = "POSTED"
"""Board event: a job was posted (details: ``job``)."""
REMOVAL = "REMOVAL"
"""Board event: a job left the board, consumed or trashed (details: ``job``)."""


_V = TypeVar("_V")


class JobPriority(enum.Enum):
    """How urgent a job is; boards hand out higher priorities first."""

    VERY_HIGH = "VERY_HIGH"
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"
    VERY_LOW = "VERY_LOW"

    @classmethod
    def convert(cls, value: JobPriority | str) -> JobPriority:
        """Accept a priority or its name in any case.

        Raises:
            ValueError: ``value`` names no priority (the valid ones are listed).
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).upper())
        except ValueError:
            valid = ", ".join(p.value for p in cls)
            raise ValueError(f"{value!r} is not a job priority; valid priorities are {valid}") from None

    @property
    def rank(self) -> int:
        """0 for the most urgent priority, growing as urgency falls."""
        return _RANKS[self]

    @overload
    @classmethod
    def reorder(cls, value: tuple[JobPriority | str, _V], /) -> _V: ...

    @overload
    @classmethod
    def reorder(
        cls,
        first: tuple[JobPriority | str, _V],
        second: tuple[JobPriority | str, _V],
        /,
        *values: tuple[JobPriority | str, _V],
    ) -> tuple[_V, ...]: ...

    # Overloaded so that a type checker knows what comes back: one pair's bare
    # value, or a tuple of the values (and that no pair at all is an error).
    @classmethod
    def reorder(cls, *values: tuple[JobPriority | str, Any]) -> Any:
        """Order ``(priority, value)`` pairs most urgent first and return the values.

        As in TaskFlow, one pair gives its bare value and several give a
        tuple; values of equal priority keep their order.

        Raises:
            ValueError: no pair given, or a priority is not valid.
        """
        if not values:
            raise ValueError("at least one (priority, value) pair is required")
        ranked = sorted(((cls.convert(p).rank, i, v) for i, (p, v) in enumerate(values)))
        if len(ranked) == 1:
            return ranked[0][2]
        return tuple(v for _, _, v in ranked)


_RANKS = {p: i for i, p in enumerate(JobPriority)}


@dataclass(frozen=True)
class Claim:
    """A claim on a job: who holds it and its fencing token.

    Tokens grow with every claim made on a board, so a later claim on a job
    always has a larger token than an earlier one.
    """

    owner: str
    token: int


class Claimed(NamedTuple):
    """A job and the claim just made on it (:meth:`JobBoard.claim_first`)."""

    job: Job
    claim: Claim


class AttemptEnd(enum.Enum):
    """How one claim of a job ended."""

    #: Still held (or its holder died and nobody has noticed yet).
    OPEN = "open"
    #: Given back on purpose (``abandon``), for example on a graceful stop.
    ABANDONED = "abandoned"
    #: Given back because running the job failed.
    FAILED = "failed"
    #: Ended by the claim's loss (expiry, session loss): the holder died or hung.
    LOST = "lost"


@dataclass(frozen=True)
class Attempt:
    """One claim of a job, as the job's history records it."""

    owner: str
    token: int
    claimed_at: float
    end: AttemptEnd = AttemptEnd.OPEN
    reason: str | None = None

    @property
    def counts_as_failure(self) -> bool:
        """A failed run or a lost claim (not an orderly give-back, not the current one)."""
        return self.end in (AttemptEnd.FAILED, AttemptEnd.LOST)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form boards store."""
        return {
            "owner": self.owner,
            "token": self.token,
            "claimed_at": self.claimed_at,
            "end": self.end.value,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        """Read the JSON form back."""
        return cls(
            owner=str(data["owner"]),
            token=int(data["token"]),
            claimed_at=float(data["claimed_at"]),
            end=AttemptEnd(data.get("end", "open")),
            reason=data.get("reason"),
        )


class ClaimLost(exc.JobFailure):
    """A claim is no longer the job's current one (expired, abandoned, taken over).

    Attributes:
        job: the uuid of the job.
        claim: the claim that was lost.
        current: the job's current claim, if any.
    """

    def __init__(self, message: str, *, job: str, claim: Claim, current: Claim | None = None) -> None:
        super().__init__(message)
        self.job = job
        self.claim = claim
        self.current = current


_R = TypeVar("_R")


def check_who(meth: Callable[..., _R]) -> Callable[..., _R]:
    """Reject an empty or non-string ``who`` before a board method runs (TaskFlow's check)."""

    @functools.wraps(meth)
    def wrapper(self: Any, job: Any, who: Any, *args: Any, **kwargs: Any) -> _R:
        check_applicant(who)
        return meth(self, job, who, *args, **kwargs)

    return wrapper


def check_applicant(who: Any) -> None:
    """Raise unless ``who`` is a non-empty string (TaskFlow's check of a claimant).

    Raises:
        TypeError: not a string.
        ValueError: empty.
    """
    if not isinstance(who, str):
        raise TypeError(f"job applicant must be a string, not {type(who).__name__}")
    if not who:
        raise ValueError("job applicant must be a non-empty string")


#: The shortest claim expiry any board takes, in seconds. TaskFlow's Redis board counts an
#: expiry in whole milliseconds and refuses one that comes to none; every board here
#: holds to that one rule, so a value fails on each board alike, not only where it matters.
MIN_CLAIM_EXPIRY = 0.001


def _number(expiry: Any, what: str, board: JobBoard) -> float:
    if isinstance(expiry, bool) or not isinstance(expiry, numbers.Real):
        raise TypeError(
            f"claim expiry for {what} on board {board.name!r} must be a number of seconds, not {expiry!r}"
        )
    return float(expiry)


def check_claim_expiry(board: JobBoard, expiry: Any, what: str) -> float | None:
    """``expiry`` (seconds, ``None``: the board's default) checked before a claim touches anything.

    One check for every board, so they refuse alike: NaN (which answers
    ``False`` to every comparison, so a ``<= 0`` check let it through and the
    claim never expired), infinity, zero, negative values and anything under
    :data:`MIN_CLAIM_EXPIRY`, which TaskFlow's Redis board refuses too.

    Args:
        board: the board claiming (named in the error).
        expiry: the expiry asked for.
        what: what is being claimed (``"job <uuid>"``), named in the error.

    Raises:
        TypeError: not a number.
        ValueError: not a finite number of at least a millisecond.
    """
    if expiry is None:
        return None
    seconds = _number(expiry, what, board)
    if not (math.isfinite(seconds) and seconds * 1000.0 >= 1):
        raise ValueError(
            f"claim expiry for {what} on board {board.name!r} must be finite and at least a millisecond "
            f"({MIN_CLAIM_EXPIRY} seconds), not {expiry!r}"
        )
    return seconds


def expiry_extension_ms(board: JobBoard, expiry: Any, what: str) -> int:
    """The whole milliseconds an ``extend_expiry(expiry)`` gives a claim; 0: it expires now.

    TaskFlow's meaning: a value that comes to no whole millisecond (zero,
    negative, under a millisecond) ends the claim at once. NaN and the
    infinities, which TaskFlow fails to convert, are refused here by name,
    before the claim is touched.

    Raises:
        TypeError: not a number.
        ValueError: NaN or infinite.
    """
    seconds = _number(expiry, what, board)
    if not math.isfinite(seconds):
        raise ValueError(
            f"claim expiry for {what} on board {board.name!r} cannot be extended by {expiry!r}: "
            "give a finite number of seconds (0 or less ends the claim now)"
        )
    return max(0, int(seconds * 1000.0))


class Job(ABC):
    """A named, trackable unit of work on a board, tied to a logbook.

    Args:
        board: the board the job is on.
        name: a name for people (not unique).
        uuid: the job's identity.
        details: JSON-able details posted with the job (``store``, ``flow_uuid``...).
        backend: persistence backend the job's logbook is loaded from.
        book: the logbook itself, when already at hand.
        book_data: ``{"name", "uuid", "flows"}`` of the logbook, as posted.
        priority: how urgent the job is.
        created_on: when it was posted (UTC).
    """

    def __init__(
        self,
        board: JobBoard,
        name: str,
        uuid: str,
        details: dict[str, Any] | None = None,
        backend: Backend | None = None,
        book: LogBook | None = None,
        book_data: dict[str, Any] | None = None,
        priority: JobPriority = JobPriority.NORMAL,
        created_on: datetime | None = None,
    ) -> None:
        self._board = board
        self._name = name
        self._uuid = uuid
        self._details = details or {}
        self._backend = backend
        self._book = book
        self._book_data = book_data or {}
        self._priority = priority
        self._created_on = created_on

    @property
    def board(self) -> JobBoard:
        """The board this job is on."""
        return self._board

    @property
    def name(self) -> str:
        """The job's (non-unique) name."""
        return self._name

    @property
    def uuid(self) -> str:
        """The job's identity on its board."""
        return self._uuid

    @property
    def details(self) -> dict[str, Any]:
        """The details posted with the job."""
        return self._details

    @property
    def priority(self) -> JobPriority:
        """The job's :class:`JobPriority`."""
        return self._priority

    @property
    def created_on(self) -> datetime | None:
        """When the job was posted (UTC)."""
        return self._created_on

    @property
    def last_modified(self) -> datetime | None:
        """When the job last changed hands (UTC): here its posting; boards that record more say so.

        The Redis board's jobs give their last claim or give-back (as
        TaskFlow's do); the memory and ZooKeeper boards' give the posting.
        """
        return self._created_on

    @property
    @abstractmethod
    def state(self) -> str:
        """``UNCLAIMED``, ``CLAIMED`` or ``COMPLETE`` (asks the board).

        Raises:
            JobFailure: the board cannot be read.
        """

    @property
    def book_uuid(self) -> str | None:
        """The uuid of the job's logbook, if it has one."""
        if self._book is not None:
            return self._book.uuid
        value = self._book_data.get("uuid")
        return str(value) if value is not None else None

    @property
    def book_name(self) -> str | None:
        """The name of the job's logbook, if it has one."""
        if self._book is not None:
            return self._book.name
        value = self._book_data.get("name")
        return str(value) if value is not None else None

    @property
    def posted_flow_uuids(self) -> tuple[str, ...]:
        """The uuids of the flow details the job's logbook held when it was posted.

        Beyond TaskFlow: lets a conductor go straight to a job's only flow
        detail without loading the logbook first. Empty when unknown (a job
        posted without a book, or by an older flowkit).
        """
        if self._book is not None:
            return tuple(fd.uuid for fd in self._book)
        value = self._book_data.get("flows")
        if not isinstance(value, list):
            return ()
        return tuple(str(v) for v in value)

    @property
    def book(self) -> LogBook | None:
        """The job's logbook, loaded from the board's persistence backend on first use.

        Raises:
            NotFound: the backend has no logbook with the posted uuid.
            StorageFailure: the backend cannot be read.
        """
        if self._book is None and self._backend is not None and self.book_uuid is not None:
            with self._backend.get_connection() as conn:
                self._book = conn.get_logbook(self.book_uuid)
        return self._book

    @property
    def attempts(self) -> list[Attempt]:
        """The job's claims so far, oldest first (asks the board)."""
        return self._board.attempts(self)

    def wait(
        self,
        timeout: float | None = None,
        delay: float = 0.01,
        delay_multiplier: float = 2.0,
        max_delay: float = 1.0,
        sleep_func: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> bool:
        """Wait until the job is ``COMPLETE``; return ``False`` if ``timeout`` passed first."""
        deadline = None if timeout is None else clock() + timeout
        while True:
            if self.state == states.COMPLETE:
                return True
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    return False
                delay = min(delay, left)
            sleep_func(delay)
            delay = min(delay * delay_multiplier, max_delay)

    def __str__(self) -> str:
        """TaskFlow's text (the priority as ``JobPriority.NORMAL``): conductors log jobs with it.

        The name and uuid are the poster's, so they are escaped
        (:func:`~flowkit._utils.text.log_safe`): a newline in a job's name
        forged a line of the conductor's log. The escaping is here rather than
        at each log call so that the call still passes the job itself, which
        log filters written for TaskFlow look for (Octavia's replaces a
        :class:`Job` argument with its own text), and a line not emitted never
        calls it.
        """
        return log_safe(
            f"{type(self).__name__}: {self.name} (priority={self.priority}, "
            f"uuid={self.uuid}, details={self.details})"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.uuid}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return self.uuid == other.uuid and self.board is other.board

    def __hash__(self) -> int:
        return hash(self.uuid)


#: The job states :class:`JobBoardIterator` hands out, with and without ``only_unclaimed``.
_UNCLAIMED_STATES = (states.UNCLAIMED,)
_LISTED_STATES = (states.UNCLAIMED, states.CLAIMED, states.COMPLETE)


class JobBoardIterator:
    """Iterates over a board's jobs, skipping those that left meanwhile.

    The board's listing is fetched on the first ``next()``; each job's state
    is then read as it is reached. With ``only_unclaimed`` a job claimed or
    completed since the fetch is skipped; without it every listed job whose
    state can be read is handed out, one completed since the fetch too (its
    ``state`` is then ``COMPLETE``), as TaskFlow's iterator does: it is the
    listing as it was, each job's state telling what became of it since.

    Takes TaskFlow's arguments, so a board written for TaskFlow runs
    unchanged: ``board_fetch_func(ensure_fresh=...)`` gives the jobs (none
    without it), ``board_removal_func(job)`` is called for a job found gone
    (:class:`~flowkit.exceptions.NotFound`) while its state is read, and
    ``logger`` logs a state that could not be read. flowkit's earlier form,
    ``JobBoardIterator(board, fetch)`` with ``fetch(ensure_fresh)``, still
    works: a callable in the ``logger`` place is taken as the fetch function
    (a logger is never callable).

    Attributes:
        only_unclaimed: hand out unclaimed jobs only.
        ensure_fresh: ask the board to refresh its listing first (boards that
            keep a local cache honour it; others always read fresh).
    """

    def __init__(
        self,
        board: JobBoard,
        logger: logging.Logger | logging.LoggerAdapter[Any] | Callable[[bool], Iterable[Job]] | None = None,
        board_fetch_func: Callable[..., Iterable[Job]] | None = None,
        board_removal_func: Callable[[Job], Any] | None = None,
        only_unclaimed: bool = False,
        ensure_fresh: bool = False,
    ) -> None:
        self._board = board
        fetch: Callable[[bool], Iterable[Job]] | None = None
        if callable(logger) and not isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
            if board_fetch_func is not None:
                raise TypeError(
                    "JobBoardIterator: a fetch function given both as logger and board_fetch_func"
                )
            fetch, logger = logger, None
        elif board_fetch_func is not None:
            given = board_fetch_func

            def fetch(ensure_fresh: bool) -> Iterable[Job]:
                # TaskFlow passes ensure_fresh by keyword: a board's function may rely on it.
                return given(ensure_fresh=ensure_fresh)

        self._fetch = fetch
        self._removal = board_removal_func
        self._logger: logging.Logger | logging.LoggerAdapter[Any] = logger if logger is not None else LOG
        self._jobs: deque[Job] = deque()
        self._fetched = False
        self.only_unclaimed = only_unclaimed
        self.ensure_fresh = ensure_fresh

    @property
    def board(self) -> JobBoard:
        """The board this iterator reads."""
        return self._board

    def __iter__(self) -> JobBoardIterator:
        return self

    def _fill(self) -> None:
        if not self._fetched:
            if self._fetch is not None:
                self._jobs.extend(self._fetch(self.ensure_fresh))
            self._fetched = True

    def candidates(self) -> Iterator[Job]:
        """The fetched jobs in order, without asking each one's state (beyond TaskFlow).

        For a caller that tries to claim each job it gets (a conductor): the
        claim fails anyway for a job claimed or completed since the fetch
        (:class:`~flowkit.exceptions.UnclaimableJob`,
        :class:`~flowkit.exceptions.NotFound`), so asking its state first
        would only cost a round trip per job. Shares the iterator's position.
        """
        self._fill()
        while self._jobs:
            yield self._jobs.popleft()

    def __next__(self) -> Job:
        self._fill()
        allowed = _UNCLAIMED_STATES if self.only_unclaimed else _LISTED_STATES
        while self._jobs:
            job = self._jobs.popleft()
            try:
                if job.state in allowed:
                    return job
            except exc.NotFound:
                # Gone from the board since the fetch: the board may tidy up after it.
                if self._removal is not None:
                    self._removal(job)
            except exc.JobFailure:
                self._logger.warning("could not read the state of job %s", job, exc_info=True)
        raise StopIteration


class JobBoard(ABC):
    """A place jobs are posted to, claimed from, and completed on.

    Args:
        name: the board's name (for people and logs).
        conf: the board's options.
    """

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        self._name = name
        self._conf = dict(conf)

    @property
    def name(self) -> str:
        """The board's name."""
        return self._name

    @property
    def conf(self) -> dict[str, Any]:
        """The options the board was made with."""
        return dict(self._conf)

    @property
    def url(self) -> str:
        """A URL naming this board, any password masked (beyond TaskFlow).

        The URL the board was made from, or one made from its options: its
        kind, servers and where on them its jobs live, as
        :func:`~flowkit.jobs.backends._address.board_address` reads a board's
        identity. The built-in kinds keep a URL given only where it names the
        board its options make (options beside a URL win over its parts).
        Conductors record it with each job they run a flow for, so that
        ``flowkit flows resume --board URL`` can tell the job's board.
        """
        from flowkit.persistence.backends._urls import mask_url

        given = self._given_url()
        return mask_url(given if given is not None else self._url_from_options())

    def _given_url(self) -> str | None:
        """The URL the board was made from (its ``board`` option), or ``None``."""
        given = self._conf.get("board")
        return given if isinstance(given, str) and "://" in given else None

    def _given_url_naming_it(self) -> str:
        """:attr:`url` for a kind whose :meth:`_url_from_options` names the board exactly.

        The URL given, where it names the board the options make: options
        given beside a URL win over its parts (a path, hosts), and a URL
        kept then named another board than the one the jobs are on.
        """
        from flowkit.persistence.backends._urls import mask_url

        named, given = self._url_from_options(), self._given_url()
        return mask_url(given if given is not None and self._names_this_board(given, named) else named)

    def _names_this_board(self, given: str, named: str) -> bool:
        """Whether URL ``given`` names the board URL ``named`` names (their addresses are equal)."""
        from flowkit.jobs.backends._address import board_address

        try:
            return board_address(given) == board_address(named)
        except ValueError:  # a URL the board read but the comparison cannot: name the board by its options
            return False

    def _url_from_options(self) -> str:
        """:attr:`url` for a board made from options rather than a URL (each kind says where it is)."""
        kind = self._conf.get("board")
        return f"{kind if isinstance(kind, str) and kind else type(self).__name__.lower()}://{self._name}"

    @abstractmethod
    def iterjobs(self, only_unclaimed: bool = False, ensure_fresh: bool = False) -> JobBoardIterator:
        """Iterate over the board's jobs, most urgent then oldest first."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> JobBoardIterator:
        """Block until the board holds a job; return an iterator over the jobs.

        Raises:
            NotFound: ``timeout`` seconds passed without a job.
        """

    @property
    @abstractmethod
    def job_count(self) -> int:
        """How many jobs are on the board (approximate when others change it)."""

    @abstractmethod
    def find_owner(self, job: Job) -> str | None:
        """Who holds ``job``'s claim, or ``None`` (also for a job no longer on the board).

        Every board answers ``None`` for a job consumed or set aside, as TaskFlow's
        boards do, rather than raising ``NotFound``.
        """

    @abstractmethod
    def current_claim(self, job: Job) -> Claim | None:
        """``job``'s current claim (owner and token), or ``None`` when unclaimed or gone from the board."""

    def find_job(self, job_uuid: str) -> Job | None:
        """The job whose uuid is ``job_uuid`` in a fresh listing, or ``None`` (beyond TaskFlow).

        ``None`` when the job is not on this board (done and consumed, set
        aside, never posted). For a caller that knows a job by its uuid alone
        (``flowkit jobs show``, ``flowkit flows resume``). Only that job's state
        is read, and a failure to read it is raised, not skipped as a listing
        skips it: a caller guarding a flow by its job must not take a job it
        could not read for a job gone.

        Raises:
            JobFailure: the board, or the job's state, cannot be read.
        """
        for job in self.iterjobs(ensure_fresh=True).candidates():
            if job.uuid == job_uuid:
                try:
                    return job if job.state in _LISTED_STATES else None
                except exc.NotFound:
                    return None
        return None

    def claim_of(self, job_uuid: str) -> Claim | None:
        """The current claim of the job whose uuid is ``job_uuid``, or ``None`` (beyond TaskFlow).

        ``None`` when the job is unclaimed or not on this board. For a caller
        that knows a job by its uuid alone: a conductor finding the flow
        detail it is to run fenced for another job asks whether that job is
        still being run. This default looks the job up in a fresh listing;
        boards that find a job's claim by its uuid answer in one read.

        Raises:
            JobFailure: the board cannot be read.
        """
        for job in self.iterjobs(ensure_fresh=True).candidates():
            if job.uuid == job_uuid:
                try:
                    return self.current_claim(job)
                except exc.NotFound:
                    return None
        return None

    def check_claim(self, job: Job, claim: Claim) -> None:
        """Raise :class:`ClaimLost` unless ``claim`` is still ``job``'s current claim.

        Raises:
            ClaimLost: the job was consumed, abandoned, or claimed again since.
        """
        try:
            current = self.current_claim(job)
        except exc.NotFound:
            current = None
        if current != claim:
            raise lost_claim(self, job, claim, current)

    def holds_locally(self, job: Job, claim: Claim) -> bool:
        """Whether this board object knows, without asking its server, that ``claim`` holds ``job``.

        ``True`` only when this board made or renewed the claim recently
        enough that it cannot have lapsed yet (the Redis and ZooKeeper
        boards, for claims they made); ``False`` means "ask"
        (:meth:`check_claim`), never "lost".
        """
        return False

    @abstractmethod
    def attempts(self, job: Job) -> list[Attempt]:
        """``job``'s claims so far, oldest first (see :class:`Attempt`)."""

    @abstractmethod
    def post(
        self,
        name: str,
        book: LogBook | None = None,
        details: dict[str, Any] | None = None,
        priority: JobPriority | str = JobPriority.NORMAL,
    ) -> Job:
        """Post a new job and return it.

        Raises:
            InvalidFormat: ``details`` cannot be stored as JSON.
            JobFailure: the board cannot be written.
        """

    @abstractmethod
    def claim(self, job: Job, who: str, expiry: float | None = None) -> Claim:
        """Claim ``job`` for ``who`` and return the claim.

        Args:
            job: a job on this board.
            who: the claiming entity's name.
            expiry: seconds the claim lasts unless kept alive (boards
                whose claims expire; the board's default otherwise).

        Raises:
            UnclaimableJob: someone holds it already, or it is complete.
            NotFound: the job is not on the board.
        """

    def claim_first(self, jobs: Sequence[Job], who: str, expiry: float | None = None) -> Claimed | None:
        """Claim the first of ``jobs`` that can be claimed, trying them in order (beyond TaskFlow).

        Jobs claimed by someone else or gone from the board are passed over,
        so conductors racing down one listing do not pay a round trip for
        every job a peer took first: a board may try several in one round
        trip (the Redis board does).

        Returns:
            the job claimed and its claim, or ``None`` when none could be.

        Raises:
            ValueError, TypeError: as :meth:`claim`.
        """
        check_applicant(who)
        for job in jobs:
            try:
                return Claimed(job, self.claim(job, who, expiry=expiry))
            except (exc.UnclaimableJob, exc.NotFound):
                continue
        return None

    @abstractmethod
    def consume(self, job: Job, who: str, claim: Claim | None = None) -> None:
        """Remove ``job`` from the board as done; only its claimant may.

        Args:
            job: the claimed job.
            who: its claimant.
            claim: beyond TaskFlow: consume only while this very claim (its
                token, not just its owner's name) is current, checked in the
                same atomic step as the removal.

        Raises:
            NotFound: the job is not on the board, or nobody holds its claim
                (as TaskFlow: its owner cannot be found).
            ClaimLost: ``claim`` was given and is no longer the job's current claim.
            JobFailure: someone other than ``who`` holds the job's claim.
        """

    @abstractmethod
    def abandon(
        self,
        job: Job,
        who: str,
        reason: str | None = None,
        failed: bool = False,
        claim: Claim | None = None,
    ) -> None:
        """Give ``job``'s claim back so another entity can claim it.

        Args:
            job: the claimed job.
            who: its claimant.
            reason: why, recorded in the job's history.
            failed: the run failed (counts towards setting the job aside).
            claim: as for :meth:`consume`.

        Raises:
            NotFound: the job is not on the board, or nobody holds its claim
                (as TaskFlow: its owner cannot be found).
            ClaimLost: ``claim`` was given and is no longer the job's current claim.
            JobFailure: someone other than ``who`` holds the job's claim.
        """

    @abstractmethod
    def trash(self, job: Job, who: str, reason: str | None = None, claim: Claim | None = None) -> None:
        """Set ``job`` aside: remove it from the board, keeping it (and ``reason``) for review.

        Args:
            job: the claimed job.
            who: its claimant.
            reason: why, kept with the job.
            claim: as for :meth:`consume`.

        Raises:
            NotFound: the job is not on the board, or nobody holds its claim
                (as TaskFlow: its owner cannot be found).
            ClaimLost: ``claim`` was given and is no longer the job's current claim.
            JobFailure: someone other than ``who`` holds the job's claim.
        """

    @abstractmethod
    def trashed(self) -> list[dict[str, Any]]:
        """The documents of jobs set aside, each with its ``reason`` and ``attempts``."""

    @abstractmethod
    def register_entity(self, entity: Any) -> None:
        """Make ``entity`` (a conductor) known on the board (boards that list them)."""

    def entities(self, kind: str = "conductor") -> list[dict[str, Any]]:
        """The entities of ``kind`` registered now (conductors alive), as ``{"kind", "name", "metadata"}``.

        What an operator asks at a conductor's door: is it alive? A board that
        lists no entities (the memory board) has none.
        """
        return []

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether the board is connected."""

    @abstractmethod
    def connect(self) -> None:
        """Open the connection to the board's server.

        Raises:
            JobFailure: the server cannot be reached (its address is named, masked).
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection; a closed board can be connected again."""

    def __enter__(self) -> JobBoard:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class NotifyingJobBoard(JobBoard):
    """A board that tells listeners about jobs posted (:data:`POSTED`) and removed (:data:`REMOVAL`).

    Callbacks may run on a board's own thread: they must be thread-safe and quick.
    """

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        super().__init__(name, conf)
        self.notifier = notifier.Notifier()

    def _notify(self, event: str, job: Job) -> None:
        if self.notifier.has_listeners:
            self.notifier.notify(event, {"job": job})


class _Waiter:
    """A condition a board's ``wait()`` sleeps on and its change paths wake."""

    def __init__(self) -> None:
        self._cond = threading.Condition()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait(seconds)


def wait_for_jobs(
    board: JobBoard,
    timeout: float | None,
    waiter: _Waiter | None = None,
    max_delay: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    has_jobs: Callable[[], bool] | None = None,
    initial_delay: float = 0.005,
    sleep: Callable[[float], object] = time.sleep,
) -> JobBoardIterator:
    """Shared ``wait()``: poll until the board holds a job (woken early by ``waiter``).

    ``has_jobs`` is the check, ``job_count > 0`` by default: a board that can
    tell "any job?" more cheaply than counting them all passes its own. The
    pause starts at ``initial_delay`` and doubles up to ``max_delay``; it is
    ``waiter``'s when there is one (a post wakes it), else ``sleep``'s.
    """
    deadline = None if timeout is None else clock() + timeout
    delay = initial_delay
    while True:
        if has_jobs() if has_jobs is not None else board.job_count > 0:
            return board.iterjobs()
        if deadline is not None:
            left = deadline - clock()
            if left <= 0:
                raise exc.NotFound(f"no job appeared on board {board.name!r} within {timeout} seconds")
            delay = min(delay, left)
        if waiter is not None:
            waiter.sleep(delay)
        else:
            sleep(delay)
        delay = min(delay * 2, max_delay)


def iter_sorted(jobs: list[Any]) -> list[Any]:
    """Order job records most urgent first, then oldest (by ``sequence``) first."""
    return sorted(jobs, key=lambda j: (j.priority.rank, j.sequence))


def lost_claim(board: JobBoard, job: Job, claim: Claim, current: Claim | None) -> ClaimLost:
    """The :class:`ClaimLost` for ``claim`` on ``job``, saying who holds the job now."""
    held = f"now held by {current.owner!r} with token {current.token}" if current else "now unclaimed"
    return ClaimLost(
        f"claim of {claim.owner!r} (token {claim.token}) on job {job.uuid} on board "
        f"{board.name!r} is lost: the job is {held}",
        job=job.uuid,
        claim=claim,
        current=current,
    )
