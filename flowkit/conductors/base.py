"""Conductors: claim jobs from a board, run their flows, consume or abandon them.

TaskFlow's ``taskflow.conductors.base`` interface. A conductor finds the flow
detail a job names (``details["flow_uuid"]`` in the job's logbook, or the
book's only flow detail), rebuilds its flow with the factory recorded in it
(:func:`flowkit.engines.save_factory_details`), and loads an engine over it
with the store made of, lowest precedence first:

1. the conductor's own ``store`` (values every job may use),
2. the flow detail's ``meta["store"]``,
3. the job's ``details["store"]``.

Beyond TaskFlow, it records the job in the flow detail's metadata
(:meth:`Conductor._job_metadata`), which guards ``flowkit flows resume``.
"""

from __future__ import annotations

import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from flowkit import engines, states
from flowkit import exceptions as exc
from flowkit._utils.factories import FactoryNames
from flowkit._utils.flow_meta import STORE_KEY
from flowkit.conductors import in_doubt
from flowkit.conductors._fencing import FencedBackend, FlowDetailHeld
from flowkit.conductors._job_record import JOB_KEY, JobRecord
from flowkit.engines.helpers import recorded_factory
from flowkit.jobs.base import Job, JobBoard
from flowkit.persistence.base import Backend
from flowkit.persistence.models import FlowDetail
from flowkit.types import notifier
from flowkit.types.entity import Entity

__all__ = ["Conductor", "FlowDetailHeld"]


class Conductor(ABC):
    """Claims jobs on ``jobboard`` and runs their flows in engines.

    Args:
        name: the conductor's name; it claims jobs under it.
        jobboard: the board to take jobs from.
        persistence: the backend holding the jobs' logbooks and flow details.
        engine: the engine kind to run flows with (``serial``, ``parallel``...).
        engine_options: more options for every engine (``executor``, ``max_workers``...).
        store: values every job's flow may use (the lowest precedence).
        factories: the flow factories this conductor may call, as dotted
            names (``"pkg.flows.make_order"``) or module prefixes ending in a
            dot (``"pkg.flows."``). A job whose flow detail names another is
            set aside (trashed) without importing or calling it. ``None``
            (the default, TaskFlow's behaviour) calls whatever factory the
            flow detail names, with the arguments recorded there: whoever can
            post jobs and write their logbooks can then make the conductor
            import any module and call any function it can reach.

    Raises:
        TypeError: ``factories`` is a single string or holds something else than strings.
    """

    #: The kind of entity registered on the board.
    ENTITY_KIND = "conductor"

    def __init__(
        self,
        name: str,
        jobboard: JobBoard,
        persistence: Backend | None = None,
        engine: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
        store: Mapping[str, Any] | None = None,
        *,
        factories: Iterable[str] | None = None,
    ) -> None:
        self._name = name
        self._factories = None if factories is None else FactoryNames(factories)
        self._jobboard = jobboard
        self._persistence = persistence
        self._engine = engine
        self._engine_options = dict(engine_options or {})
        self._store = dict(store or {})
        self._lock = threading.RLock()
        self._notifier = notifier.Notifier()

    @property
    def name(self) -> str:
        """The name jobs are claimed under."""
        return self._name

    @cached_property
    def conductor(self) -> Entity:
        """This conductor as an entity: ``name@host:pid`` with host and pid as metadata."""
        host = socket.gethostname()
        pid = os.getpid()
        return Entity(self.ENTITY_KIND, f"{self._name}@{host}:{pid}", {"hostname": host, "pid": pid})

    @property
    def notifier(self) -> notifier.Notifier:
        """Where the conductor's events are sent (see the implementation for which)."""
        return self._notifier

    def _flow_detail_from_job(self, job: Job, backend: Backend | None = None) -> FlowDetail:
        """The flow detail ``job`` names, read afresh from ``backend`` (default: the conductor's).

        The job's logbook says which flow detail to run; its current state is
        then read from the backend, since the book a job carries may be a
        copy made before an earlier run progressed. Read through a
        :class:`~flowkit.conductors._fencing.FencedBackend`, the read first
        takes the flow detail's write fence for the job's claim.

        Raises:
            NotFound: the job has no logbook, or the named flow detail is not in it.
            MultipleChoices: no ``flow_uuid`` given and the book holds several.
        """
        backend = backend if backend is not None else self._persistence
        posted = job.posted_flow_uuids
        if backend is not None and "flow_uuid" not in (job.details or {}) and len(posted) == 1:
            # The book held one flow detail when the job was posted: read that one without
            # loading the book first (a transaction fewer per job). A flow detail gone since
            # falls back to the book and its error.
            try:
                return self._fresh(posted[0], backend)
            except exc.NotFound:
                pass
        book = job.book
        if book is None:
            raise exc.NotFound(f"job {job.uuid} ({job.name!r}) has no logbook")
        flow_uuid = (job.details or {}).get("flow_uuid")
        if flow_uuid is not None:
            found = book.find(flow_uuid)
            if found is None:
                raise exc.NotFound(f"job {job.uuid}: flow detail {flow_uuid} is not in logbook {book.uuid}")
            return found if backend is None else self._fresh(found.uuid, backend)
        details = list(book)
        if len(details) == 1:
            return details[0] if backend is None else self._fresh(details[0].uuid, backend)
        if not details:
            raise exc.NotFound(f"job {job.uuid}: logbook {book.uuid} holds no flow detail")
        raise exc.MultipleChoices(
            f"job {job.uuid}: logbook {book.uuid} holds {len(details)} flow details and the job "
            "names none ('flow_uuid' in its details)"
        )

    @staticmethod
    def _fresh(fd_uuid: str, backend: Backend) -> FlowDetail:
        if isinstance(backend, FencedBackend):
            return backend.take(fd_uuid)
        with backend.get_connection() as conn:
            return conn.get_flow_details(fd_uuid)

    def _store_for(self, job: Job, flow_detail: FlowDetail) -> dict[str, Any]:
        store = dict(self._store)
        store.update((flow_detail.meta or {}).get(STORE_KEY) or {})
        store.update((job.details or {}).get("store") or {})
        return store

    def _engine_from_job(self, job: Job, backend: Backend | None = None) -> Any:
        """Load the engine that runs ``job``'s flow (writing through ``backend``).

        A flow detail with atoms left ``RUNNING`` by a conductor that died is
        first shown to :func:`flowkit.conductors.in_doubt.resolve`; atoms it
        finds done are recorded, and the engine is loaded from the result.
        """
        backend = backend if backend is not None else self._persistence
        flow_detail = self._flow_detail_from_job(job, backend)
        engine = self._load(job, flow_detail, backend)
        if backend is not None and any(ad.state == states.RUNNING for ad in flow_detail):
            engine.compile()
            engine.prepare()
            if in_doubt.resolve(engine):
                engine.storage.flush()
                engine = self._load(job, self._fresh(flow_detail.uuid, backend), backend)
        # Staged, written with the flow's first state change: no write of its own.
        engine.storage.update_flow_metadata(self._job_metadata(job))
        return engine

    def _job_metadata(self, job: Job) -> dict[str, Any]:
        """What the conductor records in the metadata of the flow it runs for ``job`` (beyond TaskFlow).

        The job, on this conductor's board (its kind and :attr:`~flowkit.jobs.base.JobBoard.url`,
        password masked): ``flowkit flows resume`` of the flow then holds the
        job while it runs, rather than running it beside the live conductor
        holding it (:mod:`flowkit.cli._held`). Subclasses add to the dict.
        """
        return {JOB_KEY: JobRecord.of(job.uuid, self._jobboard.url).to_dict()}

    def _load(self, job: Job, flow_detail: FlowDetail, backend: Backend | None) -> Any:
        self._check_factory(flow_detail)
        options = dict(self._engine_options)
        if self._engine is not None:
            options["engine"] = self._engine
        return engines.load_from_detail(
            flow_detail, store=self._store_for(job, flow_detail), backend=backend, **options
        )

    def _check_factory(self, flow_detail: FlowDetail) -> None:
        """Refuse, before anything is imported, a factory outside ``factories`` (when given).

        Raises:
            ImportError: the flow detail names a factory this conductor may not call.
        """
        if self._factories is None:
            return
        name = recorded_factory(flow_detail)
        if name is None:
            return  # nothing will be called; loading says the detail records no factory
        if self._factories.allows(name):
            from flowkit._flow_codec import import_path  # only conductors given factories need it

            real = self._factories.disallowed_target(name, import_path)
            if real is None:
                return
            raise ImportError(
                f"flow detail '{flow_detail.name}' {flow_detail.uuid} names flow factory '{name}', which"
                f" is {real}: conductor '{self._name}' may not call it (an allowed module does not lend"
                f" what it imports): it is given factories={self._factories.listed()}"
            )
        raise ImportError(
            f"flow detail '{flow_detail.name}' {flow_detail.uuid} names flow factory '{name}', which"
            f" conductor '{self._name}' may not call: it is given factories={self._factories.listed()}"
        )

    def _listeners_from_job(self, job: Job, engine: Any) -> list[Any]:
        """Listeners to attach to ``engine`` for ``job`` (override to add some)."""
        return []

    def connect(self) -> None:
        """Connect the board unless it is connected already."""
        with self._lock:
            if not self._jobboard.connected:
                self._jobboard.connect()

    def close(self) -> None:
        """Close the board."""
        with self._lock:
            self._jobboard.close()

    @abstractmethod
    def run(self, max_dispatches: int | None = None) -> None:
        """Claim, run and consume jobs until stopped, or until ``max_dispatches`` were dispatched."""

    @abstractmethod
    def stop(self) -> None:
        """Ask the conductor to stop; returns at once (see :meth:`wait`)."""

    @abstractmethod
    def wait(self, timeout: float | None = None) -> bool:
        """Wait for :meth:`run` to return; ``False`` if ``timeout`` passed first."""
