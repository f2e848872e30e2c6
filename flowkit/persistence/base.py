"""The two interfaces every persistence backend implements.

A :class:`Backend` is made from configuration and is cheap to make (no I/O);
it is shared between threads and hands out :class:`Connection` objects, each
used by one thread at a time, which do the reading and writing.

Every connection keeps the same promises, checked by one contract test suite
run against every backend (``tests/persistence/test_contract.py``):

- Missing records raise :class:`~flowkit.exceptions.NotFound` naming the uuid;
  failures of the underlying store raise
  :class:`~flowkit.exceptions.StorageFailure` naming the operation, with the
  store's own error chained.
- Everything returned is a fresh object: callers may change it freely without
  changing what is stored, and objects passed in are never kept.
- Stored values go through JSON, so results come back as JSON types (tuples
  as lists, integer dict keys as strings). Every backend writes the same JSON:
  :func:`encode_json` (ASCII only, so a lone surrogate survives any database's
  text encoding; NaN and infinities as Python writes them, as TaskFlow does).
  A pydantic model is stored as its JSON dump (it comes back as a mapping;
  :mod:`flowkit.typed` validation turns it back into the model where a task's
  annotation asks for one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, NamedTuple

from flowkit import exceptions as exc
from flowkit.persistence._json import encode_json
from flowkit.persistence.models import AtomDetail, FlowDetail, LogBook

__all__ = [
    "EVENT_LOG_KEY",
    "READY_CAUSE",
    "AtomStatus",
    "Backend",
    "Connection",
    "FenceRefused",
    "FenceTaken",
    "WriteFence",
    "encode_json",
    "ready_events",
]

#: The atom metadata key the event log keeps an atom's events under
#: (``flowkit.listeners.events.META_KEY``; named here too because this
#: layer sits below the listeners, and a test checks the two agree).
EVENT_LOG_KEY = "event_log"
#: The cause kind of an event that started an atom because others completed
#: (:attr:`flowkit.listeners.events.CauseKind.READY`, checked alike).
READY_CAUSE = "ready"


class AtomStatus(NamedTuple):
    """What a live view needs of one atom, without its results, failures or metadata.

    ``state`` and ``intention`` are the atom detail's own (``state`` is None
    for an atom never run, as in the detail). ``ready`` is how many events of
    its event log say it started because others completed
    (:func:`ready_events`): a view drawing links learned from the event log
    knows from it when to draw them again.
    """

    state: str | None
    intention: str
    ready: int

    @classmethod
    def of(cls, detail: AtomDetail) -> AtomStatus:
        """The status of ``detail`` (a detail read whole: its archived history folded back)."""
        return cls(detail.state, detail.intention, ready_events(detail.meta))


def ready_events(meta: Mapping[str, Any] | None) -> int:
    """How many events of the event log in atom metadata ``meta`` have cause kind ``ready``.

    Entries that are not events (not mappings, or a cause that is not one),
    and a log that is not a list, are not counted: a damaged log reads as
    fewer events, not as an error.
    """
    events = meta.get(EVENT_LOG_KEY) if isinstance(meta, Mapping) else None
    if not isinstance(events, (list, tuple)):
        return 0
    count = 0
    for event in events:
        cause = event.get("cause") if isinstance(event, dict) else None
        if isinstance(cause, dict) and cause.get("kind") == READY_CAUSE:
            count += 1
    return count


class WriteFence(NamedTuple):
    """Who alone may write a flow detail's progress: one claim of one job.

    ``holder`` is the job's uuid and ``token`` the claim's fencing token.
    Tokens are compared only between fences of the same ``holder`` (a job's
    claims carry growing tokens; two jobs' tokens say nothing about each
    other).
    """

    holder: str
    token: int


class FenceTaken(NamedTuple):
    """What :meth:`Connection.take_fence` did.

    ``flow`` is the flow detail read under the new fence and ``replaced`` the
    fence it held just before (None: it was not fenced).
    """

    flow: FlowDetail
    replaced: WriteFence | None


class FenceRefused(exc.StorageFailure):
    """A fenced write or a fence was refused: the flow detail is fenced for someone else.

    Attributes:
        flow: the flow detail's uuid.
        fence: the fence that was refused.
        current: the fence the flow detail holds, if any.
    """

    def __init__(self, message: str, *, flow: str, fence: WriteFence, current: WriteFence | None) -> None:
        super().__init__(message)
        self.flow = flow
        self.fence = fence
        self.current = current

    @classmethod
    def make(cls, flow: str, fence: WriteFence, current: WriteFence | None, action: str) -> FenceRefused:
        """The error for ``action`` refused on ``flow``, saying who holds it now."""
        held = "not fenced"
        if current is not None:
            held = f"fenced for job {current.holder} with token {current.token}"
        return cls(
            f"{action} flow detail {flow!r} for job {fence.holder} with token {fence.token} refused: "
            f"it is {held}",
            flow=flow,
            fence=fence,
            current=current,
        )


class Backend(ABC):
    """A place flow progress is saved; hands out connections to it.

    Args:
        conf: the backend's options (``connection`` URL, ``path``, ...);
            ``None`` means no options.

    Raises:
        TypeError: ``conf`` is not a mapping.
    """

    def __init__(self, conf: Mapping[str, Any] | None) -> None:
        if conf is None:
            conf = {}
        if not isinstance(conf, Mapping):
            raise TypeError(f"backend configuration must be a mapping, not {type(conf).__name__}")
        # A private copy: callers reusing their dict must not reconfigure a live backend.
        self._conf: dict[str, Any] = dict(conf)
        self._writable = _writable_option(self._conf)

    @property
    def conf(self) -> Mapping[str, Any]:
        """The options the backend was made with (read-only)."""
        return MappingProxyType(self._conf)

    @property
    def writable(self) -> bool:
        """False when the backend was configured ``writable=False`` (conf key, or ``?writable=false``).

        A backend that is not writable creates, migrates and writes nothing:
        every write raises :class:`~flowkit.exceptions.StoreReadOnly` before
        any I/O, and ``upgrade()`` only checks that the store exists with this
        flowkit's layout (:class:`~flowkit.exceptions.StoreMissing`,
        :class:`~flowkit.exceptions.StoreNotUpgraded` otherwise). The
        default, as in TaskFlow, is a writable backend. The option is not
        named ``read_only`` because TaskFlow's ZooKeeper backend already takes
        that key with another meaning (its kazoo client's, which still writes).
        """
        return self._writable

    def check_storable(self, value: Any) -> str | None:
        """Raise if ``value`` cannot be written by this backend, exactly as it would fail.

        The engine calls this when a result arrives, so the atom that produced an
        unstorable value fails (and the flow reverts) instead of the write that
        carries it. A backend that encodes differently overrides it.

        Returns:
            the :func:`encode_json` text of ``value``, which the engine hands to
            the write that follows (see
            :func:`flowkit.persistence.models.attach_encoded`) so a backend
            storing that text need not encode the value again; an override
            that encodes otherwise returns None.

        Raises:
            TypeError: a value JSON has no form for.
            ValueError: a value JSON refuses.
            RecursionError: nesting deeper than the encoder goes.
        """
        return encode_json(value)

    @abstractmethod
    def get_connection(self) -> Connection:
        """Return a new connection (this is where I/O may first happen).

        Raises:
            StorageFailure: the store cannot be reached.
        """

    @abstractmethod
    def close(self) -> None:
        """Release whatever the backend holds (clients, pools, engines)."""


def _writable_option(conf: Mapping[str, Any]) -> bool:
    """The ``writable`` option of ``conf`` (a bool, or a URL query's text such as ``false``; default true).

    Raises:
        StorageFailure: the value is not a recognisable boolean (the option is named).
    """
    # Imported here: the backends package imports this module.
    from flowkit.persistence.backends._urls import conf_bool

    return conf_bool(conf, "writable", default=True)


class Connection(ABC):
    """A session with a backend: reads and writes logbooks, flows and atoms.

    Args:
        backend: the backend that made this connection.
    """

    #: Whether :meth:`fence_flow` and :meth:`save_flow_progress_fenced` are implemented.
    supports_fences: ClassVar[bool] = False

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @property
    def backend(self) -> Backend:
        """The backend this connection belongs to."""
        return self._backend

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release what this connection holds; the backend stays usable."""

    @abstractmethod
    def upgrade(self) -> None:
        """Create or migrate the store's layout to the current version (idempotent).

        On a backend that is not :attr:`Backend.writable`, check it instead and
        change nothing.

        Raises:
            StoreMissing: (not writable) there is no store at the backend's location.
            StoreNotUpgraded: (not writable) the store lacks this flowkit's layout;
                the message names the command that upgrades it.
        """

    @abstractmethod
    def validate(self) -> None:
        """Check the store is usable right now.

        Raises:
            StorageFailure: unreachable, or the layout is missing or too new.
        """

    @abstractmethod
    def clear_all(self) -> None:
        """Delete every logbook, flow detail and atom detail."""

    @abstractmethod
    def save_logbook(self, book: LogBook) -> LogBook:
        """Insert or update ``book``, its flow details and their atom details.

        Each record is merged into its stored version (``merge()`` semantics),
        or inserted when new.

        Returns:
            a fresh copy of the stored book after the save, with everything in it.

        Raises:
            NotImplementedError: an atom detail is of another kind (task, retry)
                than the stored one; nothing was written.
        """

    @abstractmethod
    def get_logbook(self, book_uuid: str, lazy: bool = False) -> LogBook:
        """Return the book with that uuid.

        Args:
            book_uuid: the book's uuid.
            lazy: return the book alone, without its flow details (TaskFlow's
                meaning; :meth:`get_flows_for_book` reads them on their own).

        Raises:
            NotFound: no such book.
        """

    @abstractmethod
    def get_logbooks(self, lazy: bool = False) -> Iterator[LogBook]:
        """Iterate over every stored book (``lazy`` as in :meth:`get_logbook`)."""

    @abstractmethod
    def get_flows_for_book(self, book_uuid: str, lazy: bool = False) -> Iterator[FlowDetail]:
        """Iterate over the flow details of one book (``lazy``: without their atom details).

        Raises:
            NotFound: no such book.
        """

    @abstractmethod
    def get_flow_details(self, fd_uuid: str, lazy: bool = False) -> FlowDetail:
        """Return the flow detail with that uuid.

        Args:
            fd_uuid: the flow detail's uuid.
            lazy: leave its atom details out.

        Raises:
            NotFound: no such flow detail.
        """

    @abstractmethod
    def get_atom_details(self, ad_uuid: str) -> AtomDetail:
        """Return the atom detail with that uuid.

        Raises:
            NotFound: no such atom detail.
        """

    @abstractmethod
    def get_atoms_for_flow(self, fd_uuid: str) -> Iterator[AtomDetail]:
        """Iterate over the atom details of one flow detail.

        Raises:
            NotFound: no such flow detail.
        """

    def get_atom_states(self, fd_uuid: str) -> dict[str, AtomStatus]:
        """Each atom of one flow detail by name, with its :class:`AtomStatus` only.

        What a view polling a running flow reads (the monitor's live stream,
        the list's counts by state): a flow of 10,000 atoms read whole builds
        10,000 details with their results, failures and metadata only for
        their states. This default is built from :meth:`get_flow_details`,
        so it answers exactly what the full read implies on any backend; a
        backend that can read less overrides it (the SQL backend selects the
        few columns it needs). Atoms are in the order the full read gives
        them; of two atoms with one name, the later one is kept.

        Raises:
            NotFound: no such flow detail (as :meth:`get_flow_details` says it).
        """
        return {detail.name: AtomStatus.of(detail) for detail in self.get_flow_details(fd_uuid)}

    @abstractmethod
    def update_flow_details(self, flow_detail: FlowDetail) -> FlowDetail:
        """Merge ``flow_detail`` into its stored version and upsert its atom details.

        Returns:
            a fresh copy of the stored flow detail, with its atom details.

        Raises:
            NotFound: the flow detail was never saved (through a logbook).
            NotImplementedError: one of its atom details is of another kind
                (task, retry) than the stored one; nothing was written.
        """

    @abstractmethod
    def update_atom_details(self, atom_detail: AtomDetail) -> AtomDetail:
        """Merge ``atom_detail`` into its stored version.

        Returns:
            a fresh copy of the stored atom detail.

        Raises:
            NotFound: the atom detail was never saved (through its flow detail).
            NotImplementedError: ``atom_detail`` is of another kind (task, retry)
                than the stored one; nothing was written.
        """

    @abstractmethod
    def destroy_logbook(self, book_uuid: str) -> None:
        """Delete a book with all its flow details and their atom details.

        Raises:
            NotFound: no such book.
        """

    @abstractmethod
    def save_flow_progress(
        self,
        flow_detail: FlowDetail,
        atom_details: Sequence[AtomDetail],
        flow_changed: bool = True,
    ) -> None:
        """Write a batch of engine progress in one all-or-nothing step.

        The engine's hot path: unlike the ``update_*`` methods nothing is read
        or merged; the given records simply become the stored ones.

        Args:
            flow_detail: the flow the atoms belong to; must already be stored.
            atom_details: atom details to insert or overwrite whole, under
                ``flow_detail``. ``flow_detail``'s own atom details are ignored.
            flow_changed: also overwrite the flow's ``state`` and ``meta``.

        Raises:
            NotFound: the flow detail was never saved.
        """

    # -- write fences (optional: see ``supports_fences``) -----------------------

    def fence_flow(
        self, fd_uuid: str, fence: WriteFence, *, take_over: bool | WriteFence = True
    ) -> FlowDetail:
        """Make ``fence`` the only one whose fenced writes go through, and read the flow.

        Taken over an earlier token of the same holder; refused while the
        same holder's later token holds it. The flow detail (with its atom
        details) is read in the same step, so what comes back includes every
        write made before the fence moved and none made after.

        Args:
            fd_uuid: the flow detail.
            fence: the fence to take.
            take_over: what to do about a fence of another holder (another
                job): ``True`` takes it over whatever it is; ``False``
                refuses; a :class:`WriteFence` takes over that one fence
                only, and refuses any other, checked in the same step as the
                change, so a fence that moved since the caller found its job
                over is not taken (conductors pass ``False``, then the fence
                of a job they found no longer claimed: two jobs posted for
                one flow detail must not take it from each other while both
                run).

        Raises:
            NotFound: no such flow detail.
            FenceRefused: a later claim of the same job holds the fence, or
                another job's fence that ``take_over`` does not let go (its
                ``current`` says which).
            NotImplementedError: this backend has no write fences.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support write fences")

    def take_fence(
        self, fd_uuid: str, fence: WriteFence, *, take_over: bool | WriteFence = True
    ) -> FenceTaken:
        """:meth:`fence_flow`, also saying which fence it replaced.

        A conductor taking a job needs both: the flow, and whether an earlier
        claim of that same job fenced it (then that claim ran it). The bundled
        backends read the replaced fence in the step that takes the fence, no
        round trip more. This default, for other backends, reads it first
        (:meth:`flow_fence`; None when the backend cannot say), then takes the
        fence: two steps, of which only the second is the fence's guarantee.

        Raises:
            as :meth:`fence_flow`.
        """
        try:
            replaced = self.flow_fence(fd_uuid)
        except NotImplementedError:
            replaced = None
        return FenceTaken(self.fence_flow(fd_uuid, fence, take_over=take_over), replaced)

    def flow_fence(self, fd_uuid: str) -> WriteFence | None:
        """The write fence flow detail ``fd_uuid`` holds now (None: never fenced).

        A conductor taking a job over reads it to tell whether an earlier
        claim of that same job already ran the flow.

        Raises:
            NotFound: no such flow detail.
            NotImplementedError: this backend has no write fences.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support write fences")

    def save_flow_progress_fenced(
        self,
        flow_detail: FlowDetail,
        atom_details: Sequence[AtomDetail],
        flow_changed: bool,
        fence: WriteFence,
    ) -> None:
        """:meth:`save_flow_progress`, done only if the flow detail is fenced with ``fence``.

        The comparison is part of the write (one transaction), so a fence
        taken by someone else an instant before refuses it, and one taken an
        instant after waits for it.

        Raises:
            NotFound: no such flow detail.
            FenceRefused: the flow detail is fenced for someone else (or not at all);
                nothing was written.
            NotImplementedError: this backend has no write fences.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support write fences")
