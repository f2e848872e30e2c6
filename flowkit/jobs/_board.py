"""What flowkit's own jobboards share beyond the :class:`~flowkit.jobs.base.JobBoard` interface.

Every board lists its jobs with one ``_fetch`` and tells who holds a job
from its current claim, so ``iterjobs`` and ``find_owner`` are written once
here. The boards that watch their server (ZooKeeper, etcd) pay for the watch
only once someone uses it: registering a listener on their notifier, or
calling ``wait()``, starts it; and they can be told to send no
notifications at all. Private: the boards' public classes are the API.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

from flowkit._utils.text import LogSafe
from flowkit.jobs.base import Job, JobBoardIterator, NotifyingJobBoard, _Waiter, wait_for_jobs
from flowkit.types import notifier

__all__ = ["ListingJobBoard", "WatchingJobBoard", "parse_entity"]


def parse_entity(raw: bytes | str, key: str, where: str, log: logging.Logger) -> dict[str, Any] | None:
    """An entity's entry (a conductor's registration) as a dict; None, with a warning, if malformed.

    The entry is whatever some process wrote under the board's entity keys:
    one that is not a JSON object made ``entities()`` raise, so ``flowkit jobs
    conductors`` listed no conductor at all (an error, or a traceback) for one
    bad entry among live ones. It is left out and named instead, as a
    malformed job document is set aside.
    """
    try:
        record = json.loads(raw)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError alike
        log.warning("ignoring malformed entity entry %s on %s: %s", LogSafe(key), where, LogSafe(err))
        return None
    if not isinstance(record, dict):
        log.warning(
            "ignoring malformed entity entry %s on %s: a JSON %s, not an object",
            LogSafe(key),
            where,
            type(record).__name__,
        )
        return None
    return record


class ListingJobBoard(NotifyingJobBoard):
    """A board whose listing is :meth:`_fetch` and whose owners are read from claims."""

    #: The logger ``iterjobs()`` hands its iterator (each board module's own).
    _log: logging.Logger = logging.getLogger(__name__)

    @abstractmethod
    def _fetch(self, ensure_fresh: bool) -> list[Any]:
        """The jobs on the board, most urgent then oldest first."""

    def iterjobs(self, only_unclaimed: bool = False, ensure_fresh: bool = False) -> JobBoardIterator:
        return JobBoardIterator(
            self,
            self._log,
            board_fetch_func=self._fetch,
            only_unclaimed=only_unclaimed,
            ensure_fresh=ensure_fresh,
        )

    def _has_jobs(self) -> bool:
        """Whether any job is on the board: ``job_count > 0`` unless a board knows a cheaper way."""
        return self.job_count > 0

    def find_owner(self, job: Job) -> str | None:
        claim = self.current_claim(job)
        return None if claim is None else claim.owner


class WatchingJobBoard(ListingJobBoard):
    """A board whose server watch sends notifications and wakes ``wait()``, run only when wanted.

    Args:
        name: the board's name.
        conf: its options.
        emit_notifications: send :data:`~flowkit.jobs.base.POSTED` and ``REMOVAL``
            to the board's ``notifier`` listeners (``False``: send none).
    """

    def __init__(self, name: str, conf: dict[str, Any], emit_notifications: bool = True) -> None:
        super().__init__(name, conf)
        self._emit_notifications = bool(emit_notifications)
        self._waiter = _Waiter()
        self.notifier = _WatchStartingNotifier(self._want_watch)

    @abstractmethod
    def _want_watch(self) -> None:
        """Start the watch (now if connected, else on connecting) for a listener or a waiter."""

    def _notify(self, event: str, job: Job) -> None:
        if self._emit_notifications:
            super()._notify(event, job)

    def wait(self, timeout: float | None = None) -> JobBoardIterator:
        self._want_watch()
        return wait_for_jobs(self, timeout, self._waiter, has_jobs=self._has_jobs)


class _WatchStartingNotifier(notifier.Notifier):
    """A board's notifier: registering a listener starts the board's watch."""

    def __init__(self, on_register: Callable[[], None]) -> None:
        super().__init__()
        self._on_register = on_register

    def register(self, *args: Any, **kwargs: Any) -> None:
        super().register(*args, **kwargs)
        self._on_register()
