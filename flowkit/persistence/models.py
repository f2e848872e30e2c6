"""The records a persistence backend stores: logbooks, flow details, atom details.

A :class:`LogBook` groups the :class:`FlowDetail` of each flow run under one
name (usually one per job); a flow detail holds one :class:`AtomDetail` per
atom, a :class:`TaskDetail` or a :class:`RetryDetail`. These are plain
in-memory objects: nothing reaches a backend until a connection saves them.

Names and behaviour follow TaskFlow's ``taskflow.persistence.models`` so code
written against it keeps working. ``to_dict()`` gives the JSON-ready form the
backends store (failures as :meth:`Failure.to_dict` records); ``from_dict()``
reads it back. Results are whatever the atom returned, so after a trip through
a backend tuples come back as lists.

This module must stay cheap to import: the engine imports it on every run, and
it pulls in no backend library.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from flowkit import exceptions as exc
from flowkit import states
from flowkit._utils.uuids import random_uuid
from flowkit.persistence._json import Encoded
from flowkit.types.failure import Failure

__all__ = [
    "ATOM_TYPES",
    "AtomDetail",
    "Encoded",
    "FlowDetail",
    "LogBook",
    "RetryDetail",
    "TaskDetail",
    "atom_detail_class",
    "atom_detail_type",
    "attach_encoded",
    "encoded_text",
]

_T = TypeVar("_T")
_AD = TypeVar("_AD", bound="AtomDetail")

# flowkit.persistence._archived's keys, spelled here: FlowDetail.add checks them for
# every atom it is given, and importing that module is left to the flows that need it.
_ARCHIVE_KEY = "archive_of"
_CHUNKS_KEY = "archived_chunks"

#: A retry's history as stored: per attempt, (what the retry returned, {atom name: Failure}),
#: the shape TaskFlow's ``RetryDetail.results`` has. Storage and the run state keep it as is.
RetryHistory = list[tuple[Any, dict[str, Failure]]]


def _now() -> datetime:
    return datetime.now(UTC)


def _same(value: _T, deep_copy: bool) -> _T:
    return deepcopy(value) if deep_copy else value


#: The fields of TaskFlow's marshalled time (oslo.utils' ``marshall_now``), ``tzname`` aside.
_TIME_FIELDS = ("year", "month", "day", "hour", "minute", "second", "microsecond")


def _marshal_time(when: datetime | None) -> dict[str, Any] | None:
    """Write a time in TaskFlow's marshalled form, so TaskFlow's ``from_dict`` reads it.

    That form is a dict of the time's fields, plus ``tzname`` for an aware time.
    TaskFlow reads ``tzname`` as an IANA zone name, which a fixed offset is not, so
    an aware time is written in UTC; a naive one stays naive.
    """
    if when is None:
        return None
    aware = when.tzinfo is not None and when.utcoffset() is not None
    if aware:
        when = when.astimezone(UTC)
    fields: dict[str, Any] = {name: getattr(when, name) for name in _TIME_FIELDS}
    if aware:
        fields["tzname"] = "UTC"
    return fields


def _unmarshal_time(when: Any, field: str, book: LogBook) -> datetime | None:
    """Read a stored time: TaskFlow's dict form (what flowkit writes), ISO text or epoch seconds.

    ISO 8601 text is what flowkit wrote before it wrote TaskFlow's form; files and
    nodes written then are still read.

    Args:
        field: the book's field ``when`` was stored in (``"created_at"``); with
            ``book``, what the error names (built only if there is one: every
            logbook read passes here).

    Raises:
        InvalidFormat: ``when`` is no time in any of those forms (the reason is its cause).
        ValueError: ``when`` is text that is no ISO 8601 time (datetime's error, as its cause).
    """
    if not when:
        return None
    if isinstance(when, datetime):
        return when
    if isinstance(when, str):
        try:
            return datetime.fromisoformat(when)
        except ValueError as err:
            raise ValueError(_not_a_time(when, field, book)) from err
    if isinstance(when, int | float):
        return datetime.fromtimestamp(when, UTC)
    if isinstance(when, Mapping) and "seconds" in when:
        return datetime.fromtimestamp(when["seconds"] + when.get("microseconds", 0) / 1e6, UTC)
    if isinstance(when, Mapping) and "year" in when:
        try:
            return _unmarshal_taskflow_time(when)
        except (KeyError, TypeError, ValueError) as err:
            # str() says the cause (the field missing, the value refused) below this.
            raise exc.InvalidFormat(_not_a_time(when, field, book)) from err
    raise exc.InvalidFormat(_not_a_time(when, field, book))


def _not_a_time(when: Any, field: str, book: LogBook) -> str:
    return f"'{field}' of logbook '{book.name}' ({book.uuid}) is not a time: {when!r}"


def _unmarshal_taskflow_time(when: Mapping[str, Any]) -> datetime:
    """Read TaskFlow's marshalled time: its fields, naive UTC unless a ``tzname`` says otherwise.

    Raises:
        KeyError, TypeError, ValueError: ``when`` lacks a field or holds a bad one.
    """
    naive = datetime(
        when["year"],
        when["month"],
        when["day"],
        when["hour"],
        when["minute"],
        min(when["second"], 59),  # a leap second, which datetime cannot hold
        when.get("microsecond", 0),
    )
    tzname = when.get("tzname")
    if not tzname or tzname in ("UTC", "UTC+00:00"):
        return naive.replace(tzinfo=UTC)
    from zoneinfo import ZoneInfo  # only for records written in another zone

    return naive.replace(tzinfo=ZoneInfo(tzname))


def _read_meta(data: Mapping[str, Any]) -> dict[str, Any]:
    # Old records (TaskFlow's too) may hold None or junk here; a dict is always expected.
    meta = data.get("meta")
    return meta if isinstance(meta, dict) else {}


def _require(data: Mapping[str, Any], kind: str) -> tuple[str, str]:
    try:
        return data["name"], data["uuid"]
    except (KeyError, TypeError) as err:
        raise exc.InvalidFormat(f"a stored {kind} record needs 'name' and 'uuid': {data!r}") from err


class StoredAtom(NamedTuple):
    """What a stored atom record (:meth:`AtomDetail.to_dict`'s form) says of the atom, as a detail reads it.

    Not TaskFlow's (so not in ``__all__``): the persistence package's. A
    backend answering :meth:`~flowkit.persistence.base.Connection.get_atom_states`
    from its stored documents reads these few fields without building a
    detail (whose results and failures it would decode only to drop), and
    :meth:`AtomDetail.from_dict` reads them here too, so the two never differ
    on a default (an intention not stored is ``EXECUTE``, metadata that is not
    an object is empty).
    """

    name: str
    uuid: str
    state: str | None
    intention: str
    meta: dict[str, Any]

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> StoredAtom:
        """The fields of the stored record ``data``.

        Raises:
            InvalidFormat: ``name`` or ``uuid`` is missing.
        """
        name, uuid = _require(data, "atom detail")
        return cls(name, uuid, data.get("state"), data.get("intention") or states.EXECUTE, _read_meta(data))


def _meta_lines(meta: Mapping[str, Any], pad: str) -> list[str]:
    if not meta:
        return []
    lines = [f"{pad}- metadata:"]
    for key, value in meta.items():
        shown = value
        # Progress is a fraction; people read it as a percentage.
        if key == "progress" and isinstance(value, int | float) and not isinstance(value, bool):
            shown = f"{value * 100.0:0.2f}%"
        lines.append(f"{pad}  + {key} = {shown}")
    return lines


class LogBook:
    """A named collection of flow details, usually one per job or workflow owner.

    Args:
        name: a name for people; need not be unique.
        uuid: the book's identity; a new random one when omitted.

    Attributes:
        meta: free-form data stored with the book.
        created_at: when the book object was made (UTC).
        updated_at: when a flow detail was last added (UTC), else ``None``.
    """

    __slots__ = ("_flows", "_name", "_uuid", "created_at", "meta", "updated_at")

    def __init__(self, name: str, uuid: str | None = None) -> None:
        self._name = name
        self._uuid = uuid if uuid else random_uuid()
        self._flows: dict[str, FlowDetail] = {}
        self.meta: dict[str, Any] = {}
        self.created_at: datetime | None = _now()
        self.updated_at: datetime | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def uuid(self) -> str:
        return self._uuid

    def add(self, fd: FlowDetail) -> None:
        """Add ``fd`` (replacing one with the same uuid); nothing is saved yet."""
        self._flows[fd.uuid] = fd
        self.updated_at = _now()

    def find(self, flow_uuid: str) -> FlowDetail | None:
        """Return the flow detail with that uuid, or ``None``."""
        return self._flows.get(flow_uuid)

    def __iter__(self) -> Iterator[FlowDetail]:
        return iter(list(self._flows.values()))

    def __len__(self) -> int:
        return len(self._flows)

    def __repr__(self) -> str:
        return f"<LogBook {self._name!r} uuid={self._uuid} flows={len(self._flows)}>"

    def merge(self, lb: LogBook, deep_copy: bool = False) -> LogBook:
        """Take ``lb``'s meta and times into this book (not its flow details).

        Backends use this to fold a caller's book into the stored one. The
        argument is named ``lb`` as in TaskFlow, so keyword calls keep working.

        Returns:
            this book.
        """
        if lb is not self:
            if self.meta != lb.meta:
                self.meta = _same(lb.meta, deep_copy)
            self.created_at = lb.created_at
            self.updated_at = lb.updated_at
        return self

    def copy(self, retain_contents: bool = True) -> LogBook:
        """Return a shallow copy: its own meta dict and flow index, shared flow details.

        Args:
            retain_contents: keep the flow details (the objects themselves
                are shared, not copied); ``False`` gives an empty book.
        """
        clone = LogBook(self._name, self._uuid)
        clone.meta = dict(self.meta)
        clone.created_at = self.created_at
        clone.updated_at = self.updated_at
        if retain_contents:
            clone._flows = dict(self._flows)
        return clone

    def to_dict(self, marshal_time: bool = False) -> dict[str, Any]:
        """Return the book's own fields (not its flow details) as a dict.

        Args:
            marshal_time: write times as JSON-safe dicts of their fields, in
                TaskFlow's form (aware times in UTC), so that TaskFlow's
                ``LogBook.from_dict(..., unmarshal_time=True)`` reads them back.
                flowkit's ``from_dict`` also reads the ISO 8601 text it wrote before.
        """
        return {
            "name": self._name,
            "uuid": self._uuid,
            "meta": self.meta,
            "created_at": _marshal_time(self.created_at) if marshal_time else self.created_at,
            "updated_at": _marshal_time(self.updated_at) if marshal_time else self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], unmarshal_time: bool = False) -> LogBook:
        """Build a book (without flow details) from :meth:`to_dict` output.

        Raises:
            InvalidFormat: ``name`` or ``uuid`` is missing.
        """
        name, uuid = _require(data, "logbook")
        book = cls(name, uuid=uuid)
        created, updated = data.get("created_at"), data.get("updated_at")
        if unmarshal_time:
            created = _unmarshal_time(created, "created_at", book)
            updated = _unmarshal_time(updated, "updated_at", book)
        book.created_at, book.updated_at = created, updated
        book.meta = _read_meta(data)
        return book

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """Describe the book and everything in it, one indented line per field."""
        pad = " " * (indent + 1)
        lines = [f"{' ' * indent}LogBook: '{self._name}'", f"{pad}- uuid = {self._uuid}"]
        lines.extend(_meta_lines(self.meta, pad))
        if self.created_at is not None:
            lines.append(f"{pad}- created_at = {self.created_at.isoformat()}")
        if self.updated_at is not None:
            lines.append(f"{pad}- updated_at = {self.updated_at.isoformat()}")
        lines.extend(fd.pformat(indent + 1, linesep) for fd in self)
        return linesep.join(lines)


class FlowDetail:
    """What is known about one run of one flow: its state, meta and atom details.

    Args:
        name: the flow's name.
        uuid: the flow detail's identity (engines resume by it).

    Attributes:
        state: the flow's last recorded state, ``None`` before it ran.
        meta: free-form data stored with the flow detail.
    """

    __slots__ = ("_archives", "_atoms", "_name", "_unfolded", "_uuid", "meta", "state")

    def __init__(self, name: str, uuid: str) -> None:
        self._name = name
        self._uuid = uuid
        self._atoms: dict[str, AtomDetail] = {}
        # Chunks of long metadata lists read from a backend, by uuid (see
        # flowkit.persistence._archived): kept out of the atoms, and put back
        # into their owners' metadata before anything reads the atoms.
        self._archives: dict[str, AtomDetail] | None = None
        self._unfolded = False
        self.state: str | None = None
        self.meta: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def uuid(self) -> str:
        return self._uuid

    def add(self, ad: AtomDetail) -> None:
        """Add ``ad`` (replacing one with the same uuid); nothing is saved yet.

        A chunk of another atom's long metadata list, as backends store them
        (:mod:`flowkit.persistence._archived`), is not an atom: it is kept
        aside and put back into its owner's metadata when the atoms are read.
        """
        meta = ad.meta
        if meta and (_ARCHIVE_KEY in meta or _CHUNKS_KEY in meta):
            self._unfolded = True
            if _ARCHIVE_KEY in meta:
                if self._archives is None:
                    self._archives = {}
                self._archives[ad.uuid] = ad
                return
        self._atoms[ad.uuid] = ad

    def _settle(self) -> None:
        """Put archived chunks back into their owners' metadata (once, after adds)."""
        if self._unfolded:
            from flowkit.persistence._archived import fold

            self._unfolded = False
            fold(self._atoms, self._archives or {})

    def find(self, ad_uuid: str) -> AtomDetail | None:
        """Return the atom detail with that uuid, or ``None``."""
        self._settle()
        return self._atoms.get(ad_uuid)

    def __iter__(self) -> Iterator[AtomDetail]:
        self._settle()
        return iter(list(self._atoms.values()))

    def __len__(self) -> int:
        return len(self._atoms)

    def __repr__(self) -> str:
        return f"<FlowDetail {self._name!r} uuid={self._uuid} state={self.state} atoms={len(self._atoms)}>"

    def update(self, fd: FlowDetail) -> FlowDetail:
        """Become ``fd``: take its state, meta and atom details by reference.

        Returns:
            this flow detail.
        """
        if fd is not self:
            fd._settle()
            self._atoms = fd._atoms
            self._archives = fd._archives
            self._unfolded = False
            self.state = fd.state
            self.meta = fd.meta
        return self

    def merge(self, fd: FlowDetail, deep_copy: bool = False) -> FlowDetail:
        """Take ``fd``'s state and meta (not its atom details); ``fd`` is TaskFlow's argument name.

        Returns:
            this flow detail.
        """
        if fd is not self:
            if self.meta != fd.meta:
                self.meta = _same(fd.meta, deep_copy)
            self.state = fd.state
        return self

    def copy(self, retain_contents: bool = True) -> FlowDetail:
        """Return a shallow copy: its own meta dict and atom index, shared atom details.

        Args:
            retain_contents: keep the atom details (shared, not copied);
                ``False`` gives a flow detail without any.
        """
        clone = FlowDetail(self._name, self._uuid)
        clone.state = self.state
        clone.meta = dict(self.meta)
        if retain_contents:
            self._settle()
            clone._atoms = dict(self._atoms)
            clone._archives = dict(self._archives) if self._archives else None
        return clone

    def to_dict(self) -> dict[str, Any]:
        """Return the flow detail's own fields (not its atom details) as a dict."""
        return {"name": self._name, "uuid": self._uuid, "state": self.state, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlowDetail:
        """Build a flow detail (without atom details) from :meth:`to_dict` output.

        Raises:
            InvalidFormat: ``name`` or ``uuid`` is missing.
        """
        name, uuid = _require(data, "flow detail")
        fd = cls(name, uuid)
        fd.state = data.get("state")
        fd.meta = _read_meta(data)
        return fd

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """Describe the flow detail and its atom details, one indented line per field."""
        pad = " " * (indent + 1)
        lines = [
            f"{' ' * indent}FlowDetail: '{self._name}'",
            f"{pad}- uuid = {self._uuid}",
            f"{pad}- state = {self.state}",
        ]
        lines.extend(_meta_lines(self.meta, pad))
        lines.extend(ad.pformat(indent + 1, linesep) for ad in self)
        return linesep.join(lines)


class AtomDetail(ABC):
    """What is known about one atom of one flow run: state, results, failures.

    Args:
        name: the atom's name.
        uuid: the atom detail's identity.

    Attributes:
        state: the atom's last recorded state, ``None`` before it ran.
        intention: what the engine means to do with it next (``EXECUTE``,
            ``REVERT``, ``RETRY``, ``IGNORE``).
        results: what ``execute`` returned.
        failure: why ``execute`` failed, if it did.
        revert_results: what ``revert`` returned.
        revert_failure: why ``revert`` failed, if it did.
        meta: free-form data (progress lives here).
        version: the atom's version text when the detail was written.
    """

    __slots__ = (
        "_encoded",
        "_name",
        "_uuid",
        "failure",
        "intention",
        "meta",
        "results",
        "revert_failure",
        "revert_results",
        "state",
        "version",
    )

    def __init__(self, name: str, uuid: str) -> None:
        self._name = name
        self._uuid = uuid
        self.state: str | None = None
        self.intention: str = states.EXECUTE
        self.results: Any = None
        self.failure: Failure | None = None
        self.revert_results: Any = None
        self.revert_failure: Failure | None = None
        self.meta: dict[str, Any] = {}
        self.version: str | None = None
        # Text the engine already encoded, for its next write only (see attach_encoded).
        self._encoded: Mapping[str, Encoded] | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def uuid(self) -> str:
        return self._uuid

    @property
    def last_results(self) -> Any:
        """The latest result (a task has one; a retry returns its newest)."""
        return self.results

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} uuid={self._uuid} state={self.state}>"

    def update(self, ad: AtomDetail) -> AtomDetail:
        """Become ``ad``: take every field of it by reference.

        Returns:
            this atom detail.
        """
        if ad is not self:
            self.state = ad.state
            self.intention = ad.intention
            self.results = ad.results
            self.failure = ad.failure
            self.revert_results = ad.revert_results
            self.revert_failure = ad.revert_failure
            self.meta = ad.meta
            self.version = ad.version
        return self

    def merge(self, other: AtomDetail, deep_copy: bool = False) -> AtomDetail:
        """Take ``other``'s fields into this detail.

        Results are shared by reference even with ``deep_copy``: they are
        the user's objects, and copying them may be impossible or wrong.
        Failures are immutable, so they are shared too.

        Raises:
            NotImplementedError: ``other`` is a different kind of detail.

        Returns:
            this atom detail.
        """
        if not isinstance(other, self._kind()):
            # TaskFlow's words first ("Can only merge with other task details").
            kind = "retry" if issubclass(self._kind(), RetryDetail) else "task"
            raise exc.NotImplementedError(
                f"Can only merge with other {kind} details, not a {type(other).__name__} "
                f"(into {type(self).__name__} {self.name!r})"
            )
        if other is self:
            return self
        self.state = other.state
        self.intention = other.intention
        self.failure = other.failure
        self.revert_failure = other.revert_failure
        if self.meta != other.meta:
            self.meta = _same(other.meta, deep_copy)
        self.version = other.version
        self._merge_results(other)
        return self

    @classmethod
    def _kind(cls) -> type[AtomDetail]:
        """The class whose instances this detail may merge with (its task/retry root)."""
        for klass in cls.__mro__:
            if klass in _TYPE_NAMES:
                return klass
        return cls

    def _merge_results(self, other: AtomDetail) -> None:
        self.results = other.results
        self.revert_results = other.revert_results

    @abstractmethod
    def put(self, state: str, result: Any) -> bool:
        """Record ``result`` obtained on reaching ``state``.

        A :class:`Failure` result lands in ``failure`` (or ``revert_failure``),
        anything else in ``results`` (or ``revert_results``), and fields that
        no longer apply are cleared.

        Returns:
            whether anything changed.
        """

    @abstractmethod
    def reset(self, state: str) -> None:
        """Forget results and failures, set ``state`` and intend to execute again."""

    def copy(self: _AD) -> _AD:
        """Return a copy with its own meta dict; results and failures are shared."""
        clone = type(self)(self._name, self._uuid)
        clone.state = self.state
        clone.intention = self.intention
        clone.results = self._copied_results()
        clone.failure = self.failure
        clone.revert_results = self.revert_results
        clone.revert_failure = self.revert_failure
        clone.meta = dict(self.meta)
        clone.version = self.version
        return clone

    def _copied_results(self) -> Any:
        return self.results

    def _results_to_dict(self) -> Any:
        return self.results

    def to_dict(self) -> dict[str, Any]:
        """Return every field as a dict; failures as their JSON records.

        ``results`` and ``revert_results`` are passed through as they are.
        """
        failure, revert_failure = self.failure, self.revert_failure
        return {
            "name": self._name,
            "uuid": self._uuid,
            "state": self.state,
            "intention": self.intention,
            "results": self._results_to_dict(),
            "failure": failure.to_dict() if failure is not None else None,
            "revert_results": self.revert_results,
            "revert_failure": revert_failure.to_dict() if revert_failure is not None else None,
            "meta": self.meta,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls: type[_AD], data: Mapping[str, Any]) -> _AD:
        """Build a detail of this class from :meth:`to_dict` output.

        Raises:
            InvalidFormat: ``name`` or ``uuid`` is missing, or a failure record is invalid.
        """
        stored = StoredAtom.of(data)
        ad = cls(stored.name, stored.uuid)
        ad.state = stored.state
        ad.intention = stored.intention
        ad._load_results(data.get("results"))
        ad.revert_results = data.get("revert_results")
        failure, revert_failure = data.get("failure"), data.get("revert_failure")
        ad.failure = Failure.from_dict(failure) if failure else None
        ad.revert_failure = Failure.from_dict(revert_failure) if revert_failure else None
        ad.meta = stored.meta
        ad.version = data.get("version")
        return ad

    def _load_results(self, results: Any) -> None:
        self.results = results

    def pformat(self, indent: int = 0, linesep: str = os.linesep) -> str:
        """Describe the atom detail, one indented line per field."""
        pad = " " * (indent + 1)
        version: Any = self.version  # TaskFlow-era records may hold a tuple
        if isinstance(version, list | tuple):
            version = ".".join(str(part) for part in version)
        lines = [
            f"{' ' * indent}{type(self).__name__}: '{self._name}'",
            f"{pad}- uuid = {self._uuid}",
            f"{pad}- state = {self.state}",
            f"{pad}- version = {version}",
            f"{pad}- results = {self.results}",
            f"{pad}- failure = {self.failure is not None}",
        ]
        lines.extend(_meta_lines(self.meta, pad))
        return linesep.join(lines)


class TaskDetail(AtomDetail):
    """The detail of a task: one execute result and one revert result at most."""

    __slots__ = ()

    def reset(self, state: str) -> None:
        self.results = None
        self.failure = None
        self.revert_results = None
        self.revert_failure = None
        self.state = state
        self.intention = states.EXECUTE

    def put(self, state: str, result: Any) -> bool:
        changed = state != self.state
        before = (self.results, self.failure, self.revert_results, self.revert_failure)
        self.state = state
        if state == states.FAILURE:
            self.failure = result
            self.results = self.revert_results = self.revert_failure = None
        elif state == states.REVERT_FAILURE:
            # The execute failure (if any) is kept: it is why the revert ran.
            self.revert_failure = result
            self.results = self.revert_results = None
        elif state == states.SUCCESS:
            self.results = result
            self.failure = self.revert_results = self.revert_failure = None
        elif state == states.REVERTED:
            self.revert_results = result
            self.revert_failure = None
        after = (self.results, self.failure, self.revert_results, self.revert_failure)
        # Identity, not equality: user results may not compare sanely, so a
        # new result object always counts as a change.
        return changed or any(old is not new for old, new in zip(before, after, strict=True))


class RetryDetail(AtomDetail):
    """The detail of a retry; ``results`` is its history of attempts.

    Each entry of ``results`` is ``(value the retry returned, {atom name:
    Failure})``: what the retry decided for that attempt and which atoms of
    its scope failed under it. The history survives resets only through
    :meth:`reset`, which clears it.
    """

    __slots__ = ()

    def __init__(self, name: str, uuid: str) -> None:
        super().__init__(name, uuid)
        self.results: RetryHistory = []

    @property
    def last_results(self) -> Any:
        """The value the retry returned on its latest attempt.

        Raises:
            NotFound: there has been no attempt yet.
        """
        if not self.results:
            raise exc.NotFound(f"retry '{self.name}' has no results yet")
        return self.results[-1][0]

    @property
    def last_failures(self) -> dict[str, Failure]:
        """The failures of the atoms under the retry on its latest attempt.

        Raises:
            NotFound: there has been no attempt yet.
        """
        if not self.results:
            raise exc.NotFound(f"retry '{self.name}' has no failures recorded yet")
        failures: dict[str, Failure] = self.results[-1][1]
        return failures

    def reset(self, state: str) -> None:
        self.results = []
        self.failure = None
        self.revert_results = None
        self.revert_failure = None
        self.state = state
        self.intention = states.EXECUTE

    def put(self, state: str, result: Any) -> bool:
        # The history is only ever appended to here; reset() is what clears it.
        changed = state != self.state
        self.state = state
        if state == states.SUCCESS:
            self.failure = self.revert_failure = self.revert_results = None
            self.results.append((result, {}))
            return True
        before = (self.failure, self.revert_results, self.revert_failure)
        if state == states.FAILURE:
            self.failure = result
            self.revert_results = self.revert_failure = None
        elif state == states.REVERT_FAILURE:
            self.revert_failure = result
            self.revert_results = None
        elif state == states.REVERTED:
            self.revert_results = result
            self.revert_failure = None
        after = (self.failure, self.revert_results, self.revert_failure)
        return changed or any(old is not new for old, new in zip(before, after, strict=True))

    def _merge_results(self, other: AtomDetail) -> None:
        # A new list and new failure dicts, so appending to one history never
        # shows up in the other; the values themselves stay shared.
        self.results = [(value, dict(failures)) for value, failures in other.results]
        self.revert_results = other.revert_results

    def _copied_results(self) -> RetryHistory:
        return [(value, dict(failures)) for value, failures in self.results]

    def _results_to_dict(self) -> list[list[Any]]:
        return [
            [value, {name: failure.to_dict() for name, failure in failures.items()}]
            for value, failures in self.results
        ]

    def _load_results(self, results: Any) -> None:
        self.results = [
            (value, {name: Failure.from_dict(record) for name, record in (failures or {}).items()})
            for value, failures in results or ()
        ]


# Names written to storage for each kind of detail: TaskFlow's, since
# atom_detail_type() and ATOM_TYPES are public and callers compare with them.
# The class names earlier flowkit releases wrote are still read.
_TYPE_NAMES: dict[type, str] = {RetryDetail: "RETRY_DETAIL", TaskDetail: "TASK_DETAIL"}
_CLASSES: dict[str, type[AtomDetail]] = {
    "RETRY_DETAIL": RetryDetail,
    "TASK_DETAIL": TaskDetail,
    "TaskDetail": TaskDetail,
    "RetryDetail": RetryDetail,
}
ATOM_TYPES: list[str] = list(_TYPE_NAMES.values())
"""The type names :func:`atom_detail_type` returns."""


def atom_detail_class(type_name: str) -> type[AtomDetail]:
    """Return the detail class stored under ``type_name``.

    Raises:
        TypeError: no detail class has that name.
    """
    try:
        return _CLASSES[type_name]
    except (KeyError, TypeError):
        raise TypeError(f"Unknown atom type '{type_name}' (known: {', '.join(ATOM_TYPES)})") from None


def atom_detail_type(ad: AtomDetail) -> str:
    """Return the type name to store ``ad`` under.

    Raises:
        TypeError: ``ad`` is not a task or retry detail.
    """
    for cls in type(ad).__mro__:
        name = _TYPE_NAMES.get(cls)
        if name is not None:
            return name
    raise TypeError(f"Unknown atom '{ad!r}' ({type(ad).__name__})")


def attach_encoded(ad: AtomDetail, encoded: Mapping[str, Encoded] | None) -> None:
    """Hand ``ad``'s next write the JSON text of fields already encoded (None: take it back).

    ``encoded`` maps a field (``"results"``, ``"revert_results"``) to the
    :class:`Encoded` value and text the engine made
    when it checked that value was storable. A backend that stores
    :func:`~flowkit.persistence.base.encode_json` text asks
    :func:`encoded_text` and stores that text instead of encoding the value a
    second time. Nothing else sees it: it is no field of the detail (not in
    :meth:`AtomDetail.to_dict`, copies, merges), and the engine takes it back
    once the write is over.
    """
    ad._encoded = encoded


def encoded_text(ad: AtomDetail, field: str) -> str | None:
    """The text attached for ``field`` of ``ad``, if it was made of the value the field holds now.

    None when nothing was attached, or the field holds another object than
    the one encoded (it was replaced since): the caller encodes it then.
    """
    encoded = ad._encoded
    if encoded is None:
        return None
    found = encoded.get(field)
    if found is None or found.value is not getattr(ad, field):
        return None
    return found.text
