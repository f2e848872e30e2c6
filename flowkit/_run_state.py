"""The live state of one flow run: the one place each atom's state, result and failure live.

:class:`RunState` owns one :class:`~flowkit._atom_record.AtomRecord` per atom,
the flow's state, its injected values and retry histories, and everything about
writing them to a backend: which records changed since the last write
(dirtiness), the batching switch, the connection a run holds, and the flush
that turns changed records into one ``save_flow_progress`` transaction.

Two façades sit on it and nothing else reaches inside: the engine's runtime
(the hot path: it mutates records in place and calls :meth:`RunState.changed`),
and :class:`~flowkit.storage.Storage`, TaskFlow's API by atom name. Whether an
atom "has a result" is derived from its state and failure
(:func:`~flowkit._atom_record.holds_result`), never stored beside them.

Threads: the engine thread is the only writer while a run is on. Other threads
(progress reports from pool workers, a user calling ``storage`` from a
listener) go through the completion queue or take :attr:`RunState.lock`.
"""

from __future__ import annotations

import _thread  # threading's RLock, without importing threading (start-up time)
import contextlib
import importlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._atom_record import AtomRecord, holds_result
from flowkit._utils.class_caches import make_room
from flowkit._utils.flow_meta import STORE_KEY
from flowkit._utils.uuids import random_uuid
from flowkit.atom import _OneName
from flowkit.types.failure import Failure

if TYPE_CHECKING:
    # A flow run in memory never makes a detail: the models (and what they import)
    # load with the first backend write, resume or snapshot (start-up time).
    from flowkit.persistence._json import Encoded
    from flowkit.persistence.models import AtomDetail, FlowDetail
    from flowkit.persistence.models import RetryHistory as History

__all__ = ["RunState"]


_VERSION_TEXT: dict[Any, str] = {}


def _declares_result(cls: type) -> bool:
    """Whether ``cls``'s ``execute`` annotates its result: only then may a stored one need reviving.

    Read from the function's annotations (once per class), so that a resumed run
    of unannotated tasks does not load :mod:`flowkit.typed` nor ask it about
    every atom.
    """
    known = _DECLARES_RESULT.get(cls)
    if known is None:
        make_room(_DECLARES_RESULT)
        annotations = getattr(getattr(cls, "execute", None), "__annotations__", ())
        known = _DECLARES_RESULT[cls] = "return" in annotations
    return known


_DECLARES_RESULT: dict[type, bool] = {}


def version_text(version: Any) -> str:
    """``(1, 0)`` -> ``"1.0"``, cached: most atoms share their class's version."""
    try:
        return _VERSION_TEXT[version]
    except (KeyError, TypeError):
        text = ".".join(str(p) for p in version) if isinstance(version, (list, tuple)) else str(version)
        with contextlib.suppress(TypeError):  # unhashable versions are just not cached
            _VERSION_TEXT[version] = text
        return text


class RunState:
    """States, results, inputs and pending writes of one flow.

    Args:
        flow_detail: the flow detail to keep the run in (its atom details are
            loaded: this is how a flow resumes), or the flow's name for a run kept
            in memory only.
        backend: the persistence backend the flow detail is saved to, or None.
    """

    def __init__(self, flow_detail: FlowDetail | str, backend: Any = None) -> None:
        self.backend = backend
        self.flow_state = st.PENDING
        self.records: dict[str, AtomRecord] = {}
        #: flow-level injected values (``store=``), visible to every atom.
        self.store: dict[str, Any] = {}
        #: names in :attr:`store` injected as transient (never written).
        self.transient: set[str] = set()
        self.history: dict[str, History] = {}
        #: ``(atom name, symbol) -> name of the nearest atom visible to it holding the
        #: symbol`` (or None); set by an engine once it has compiled its flow, so that
        #: storage lookups for an atom see what that atom sees.
        self.scope: Callable[[str, str], str | None] | None = None
        #: Held by writers outside the engine thread and by :meth:`flush`.
        self.lock = _thread.RLock()
        #: True while the engine runs: writes wait for its next flush.
        self.batching = False
        # symbol -> records providing it, in flow order; built on first lookup (the
        # engine never needs it, and a 100,000-atom flow would pay for it up front).
        self._provider_index: dict[str, list[AtomRecord]] | None = None
        # What must be written at the next flush: records by name, and the flow row.
        self._dirty: dict[str, AtomRecord] = {}
        self._flow_dirty = False
        self._connection: Any = None
        self._details: dict[str, AtomDetail] = {}
        # Atom name -> field -> the text its check made, for the next write (remember_encoded).
        self._encoded: dict[str, dict[str, Encoded]] = {}
        # A logbook to save before the next write (a memory backend attached late).
        self._pending_book: Any = None
        #: Whether a record may hold a long append-only metadata list (a loop's
        #: history): such lists are written in chunks (flowkit.persistence._archived).
        self.long_lists = False
        self._chunker: Any = None
        if isinstance(flow_detail, str):
            self.flow_detail: FlowDetail | None = None
            self.flow_name = flow_detail
            self.flow_uuid = random_uuid()
            self.flow_meta: dict[str, Any] = {}
            #: Changes are tracked (and written) only for a flow detail somebody can see.
            self.durable = backend is not None
        else:
            self.flow_detail = flow_detail
            self.flow_name = flow_detail.name
            self.flow_uuid = flow_detail.uuid
            self.flow_meta = flow_detail.meta
            self.durable = True
            self._load(flow_detail)

    def _load(self, flow_detail: FlowDetail) -> None:
        """Take up the states and results an earlier run left in ``flow_detail``.

        Raises:
            StorageFailure: a record holds a state flowkit does not know (named).
        """
        from flowkit import _detail_sync

        self.flow_state = flow_detail.state or st.PENDING
        if self.flow_state not in st.FLOW_STATES:
            raise exc.StorageFailure(
                f"flow detail '{flow_detail.name}' ({flow_detail.uuid}) is in unknown state "
                f"{self.flow_state!r}; refusing to guess what ran"
            )
        for detail in flow_detail:
            record, history = _detail_sync.record_from_detail(detail, flow_detail.name)
            self.records[record.name] = record
            if record._meta and not self.long_lists:
                self.long_lists = _detail_sync.has_long_lists(record._meta)
            self._details[record.name] = detail
            if history:
                self.history[record.name] = history
        stored = self.flow_meta.get(STORE_KEY)
        if isinstance(stored, dict):
            self.store.update(stored)

    # -- atoms ---------------------------------------------------------------------

    def ensure(self, atom: Any, is_retry: bool) -> AtomRecord:
        """The record of ``atom``, made (and marked changed) if missing.

        Raises:
            Duplicate: a record by that name exists for the other kind of atom
                (a task where a retry is asked for, or the reverse).
        """
        record = self.records.get(atom.name)
        if record is None:
            record = AtomRecord(atom.name, None, version_text(atom.version), is_retry)
            self.records[atom.name] = record
            record.save_as = atom.save_as
            self._provider_index = None
            if self.durable:
                self.changed(record)
        else:
            if record.is_retry != is_retry:
                kind = "retry" if record.is_retry else "task"
                raise exc.Duplicate(
                    f"Atom detail '{atom.name}' already exists in flow detail '{self.flow_name}' "
                    f"(as a {kind})"
                )
            result = record.result
            if not is_retry and result is not None and (type(result) is dict or _declares_result(type(atom))):
                # A stored model came back as its JSON object, an enum member as its
                # value, alone or inside a list or tuple: make them what the atom
                # declares again, so ``fetch`` says what it said before the stop.
                # Looked up: an import statement per atom cost more than the rest.
                typed = sys.modules.get("flowkit.typed") or importlib.import_module("flowkit.typed")
                if typed.revives(atom):
                    record.result = typed.revive_result(atom, result)
                detail = self._details.get(atom.name)
                if detail is not None:
                    # The flow detail the engine hands out (reports, ``storage.flow_detail``)
                    # says what ``fetch`` says; the JSON written for it is the same.
                    detail.results = record.result
            if record.save_as is not atom.save_as:
                # Loaded from a flow detail: what it provides comes from the atom.
                record.save_as = atom.save_as
                self._provider_index = None
        return record

    def ensure_all(self, atoms: Sequence[Any], is_retry: Sequence[bool]) -> list[AtomRecord]:
        """:meth:`ensure` for each of ``atoms`` (``is_retry`` tells which are retries), in order.

        A run that holds no record yet (a new flow, the usual case) makes them all
        in one pass: nothing to look up, compare or revive.

        Raises:
            Duplicate: as :meth:`ensure`.
        """
        records = self.records
        if records:
            return [self.ensure(atom, retry) for atom, retry in zip(atoms, is_retry, strict=True)]
        made: list[AtomRecord] = []
        add = made.append
        # Most atoms share their class's version object: convert it once.
        last_version: Any = None
        text = ""
        for atom, retry in zip(atoms, is_retry, strict=True):
            version = atom.version
            if version is not last_version or not text:
                last_version, text = version, version_text(version)
            record = AtomRecord(atom.name, None, text, retry)
            record.save_as = atom.save_as
            records[record.name] = record
            add(record)
        if len(records) != len(made):
            # Two atoms of one name (the compiler refuses that): take the slow path's answer.
            records.clear()
            return [self.ensure(atom, retry) for atom, retry in zip(atoms, is_retry, strict=True)]
        self._provider_index = None
        if self.durable:
            self._dirty.update(records)
            if not self.batching:
                self.flush()
        return made

    def record(self, name: str) -> AtomRecord:
        """The record of the atom called ``name``.

        Raises:
            NotFound: no atom by that name in this flow.
        """
        try:
            return self.records[name]
        except KeyError:
            raise exc.NotFound(f"Unknown atom name '{name}' in flow '{self.flow_name}'") from None

    @property
    def providers(self) -> dict[str, list[AtomRecord]]:
        """Symbol -> the records providing it, in the order they were made."""
        index = self._provider_index
        if index is None:
            index = {}
            for record in self.records.values():
                save_as = record.save_as
                if type(save_as) is _OneName:
                    # The common ``provides="x"``: its one name, without iterating the
                    # mapping. What flowkit.atom._result_names does, inlined: calling it
                    # per record took this index from 27 to 34 ms for 100,000 atoms.
                    found = index.get(save_as._name)
                    if found is None:
                        index[save_as._name] = [record]
                    else:
                        found.append(record)
                    continue
                for symbol in save_as:
                    index.setdefault(symbol, []).append(record)
            self._provider_index = index
        return index

    def failures(self) -> dict[str, Failure]:
        """Atom name -> its execute failure, for every atom whose last execute failed."""
        return {name: r.failure for name, r in self.records.items() if r.failure is not None}

    def revert_failures(self) -> dict[str, Failure]:
        return {name: r.revert_failure for name, r in self.records.items() if r.revert_failure is not None}

    # -- values --------------------------------------------------------------------

    def check_storable(self, value: Any) -> str | None:
        """Raise if the backend in use could not write ``value`` (see ``Backend.check_storable``).

        Returns:
            the JSON text the check made of ``value``, for :meth:`remember_encoded`
            (None for None and plain scalars, which are not encoded to be checked,
            and for a backend whose check returns no text).

        Raises:
            TypeError, ValueError, RecursionError: as the backend's encoder would.
        """
        if value is None or type(value) in (str, int, float, bool):
            return None
        if self.backend is not None:
            text = self.backend.check_storable(value)
            return text if type(text) is str else None
        from flowkit.persistence._json import encode_json

        return encode_json(value)

    def remember_encoded(self, name: str, field: str, value: Any, text: str) -> None:
        """Keep ``text`` (the check's encoding of ``value``) for the next write of atom ``name``.

        Why: the check and the write would encode the same value twice. The
        next flush attaches it to the atom's detail (``field`` is
        ``"results"`` or ``"revert_results"``) and forgets it, written or not:
        a write after that encodes the value as it then is, so a value changed
        in place later (by a task it was handed to) is written as changed.
        """
        from flowkit.persistence._json import Encoded

        texts = self._encoded.get(name)
        if texts is None:
            self._encoded[name] = {field: Encoded(value, text)}
        else:
            texts[field] = Encoded(value, text)

    def forget_encoded(self, name: str) -> None:
        """Drop what :meth:`remember_encoded` kept for atom ``name`` (its value was set anew)."""
        self._encoded.pop(name, None)

    def inject(self, pairs: Mapping[str, Any], transient: bool) -> None:
        """Add flow-level values; unless ``transient`` they are written with the flow detail.

        Raises:
            InvalidFormat: a key is not a string, or a value to be written cannot
                be (nothing is injected then).
        """
        if not transient and self.durable:
            for name, value in pairs.items():
                self.check_injectable(name, value)
        self.store.update(pairs)
        if transient:
            self.transient.update(pairs)
            return
        self.transient.difference_update(pairs)
        if self.durable:
            self.flow_meta[STORE_KEY] = {k: v for k, v in self.store.items() if k not in self.transient}
        self.changed(None)

    def replace_injected(self, pairs: Mapping[str, Any]) -> None:
        """Make ``pairs`` the flow's saved injected values; transient ones stay.

        Raises:
            InvalidFormat: as :meth:`inject` (nothing is changed then).
        """
        if self.durable:
            for name, value in pairs.items():
                self.check_injectable(name, value)
        self.store = {**{k: v for k, v in self.store.items() if k in self.transient}, **pairs}
        self.transient.difference_update(pairs)
        if self.durable:
            self.flow_meta[STORE_KEY] = dict(pairs)
        self.changed(None)

    def has_result(self, atom_name: str) -> bool:
        """Tell whether the atom named so holds an execute result now."""
        record = self.records.get(atom_name)
        return record is not None and holds_result(record)

    def check_injectable(self, name: Any, value: Any, atom: str | None = None) -> None:
        """Raise InvalidFormat if ``name`` and ``value`` cannot be injected and kept.

        The one check of both ``store=`` (flow-level) and ``inject=`` (for ``atom``
        only) values, so both refuse the same keys and values, each naming its
        own option and the flow or atom the value was for.
        """
        if not isinstance(name, str):
            if atom is None:
                key = f"store key {name!r} of flow '{self.flow_name}'"
            else:
                key = f"inject= key {name!r} for atom '{atom}'"
            raise exc.InvalidFormat(f"{key} is of type {type(name).__name__}; symbols are strings")
        try:
            self.check_storable(value)
        except (TypeError, ValueError, RecursionError) as err:
            from flowkit.persistence._json import unstorable  # loaded already by the check

            into = f"flow '{self.flow_name}'" if atom is None else f"atom '{atom}'"
            raise unstorable(f"value injected as '{name}' into {into}", err) from err

    def append_retry_result(self, retry_name: str, result: Any) -> None:
        self.history.setdefault(retry_name, []).append((result, {}))

    # -- writing -------------------------------------------------------------------

    def changed(self, record: AtomRecord | None) -> None:
        """Note that ``record`` (None: the flow itself) changed; write it now unless batching."""
        if not self.durable:
            return
        if record is None:
            self._flow_dirty = True
        else:
            self._dirty[record.name] = record
        if not self.batching:
            self.flush()

    def set_flow_state(self, state: str) -> None:
        self.flow_state = state
        self.changed(None)

    def flush(self) -> None:
        """Write every change made since the last flush, in one transaction.

        The engine calls this before it starts or reverts an atom, so a state is
        durable before the work it announces begins, and a result is durable
        before any atom that depends on it starts. Outside a run (batching off)
        the connection is given back right after the write.

        Raises:
            StorageFailure: the backend could not write; the changes stay pending
                and are written by the next flush.
        """
        if not self._dirty and not self._flow_dirty:
            return
        from flowkit import _detail_sync
        from flowkit.persistence.models import FlowDetail

        with self.lock:
            dirty, self._dirty = self._dirty, {}
            flow_changed, self._flow_dirty = self._flow_dirty, False
            flow_detail = self.flow_detail
            if flow_detail is None:
                flow_detail = self.flow_detail = FlowDetail(self.flow_name, self.flow_uuid)
                flow_detail.meta = self.flow_meta
                flow_changed = True
            flow_detail.state = self.flow_state
            details = self._details
            written: list[AtomDetail] = []
            for name, record in dirty.items():
                detail = details.get(name)
                if detail is None:
                    detail = details[name] = _detail_sync.new_detail(record)
                    flow_detail.add(detail)
                written.append(_detail_sync.fill_detail(detail, record, self.history.get(name)))
            # The texts checks made, for this write only (see remember_encoded).
            attached: list[AtomDetail] = []
            if self._encoded:
                from flowkit.persistence.models import attach_encoded

                for name in dirty:
                    texts = self._encoded.get(name)
                    if texts is not None:
                        attach_encoded(details[name], texts)
                        attached.append(details[name])
                # Kept for one flush at most, whichever atoms it wrote.
                self._encoded.clear()
        if self.backend is None:
            self._detach(attached)
            return
        marks: Any = None
        if self.long_lists:
            # A loop's history is handed over in chunks, each once (not whole, per write).
            if self._chunker is None:
                from flowkit.persistence._archived import Chunker

                self._chunker = Chunker()
            written, marks = self._chunker.stored_form(written)
        try:
            if self._connection is None:
                self._connection = self.backend.get_connection()
            if self._pending_book is not None:
                self._connection.save_logbook(self._pending_book)
                self._pending_book = None
            self._connection.save_flow_progress(flow_detail, written, flow_changed)
            if marks:
                self._chunker.commit(marks)
        except BaseException:
            with self.lock:
                self._dirty = {**dirty, **self._dirty}
                self._flow_dirty = self._flow_dirty or flow_changed
            raise
        finally:
            self._detach(attached)
            # Only a run keeps its connection between writes; a write outside one
            # (the final flow state, a user's set_flow_state) gives it back at once.
            if not self.batching:
                self.release()

    @staticmethod
    def _detach(details: list[AtomDetail]) -> None:
        """Take back the texts attached for one write: the details outlive it, the texts must not."""
        if details:
            from flowkit.persistence.models import attach_encoded

            for detail in details:
                attach_encoded(detail, None)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold writes back until the block ends (or an explicit :meth:`flush`), then flush."""
        was, self.batching = self.batching, True
        try:
            yield
        finally:
            self.batching = was
        if not was:
            try:
                self.flush()
            finally:
                self.release()

    def release(self) -> None:
        """Give the backend connection back (between runs nothing is written)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def backend_or_memory(self) -> Any:
        """The backend; for a run kept in memory, a memory backend attached now.

        From then on the run is written to it (its logbook and every record at
        the next flush), so what TaskFlow programs print from it is there.
        """
        if self.backend is not None:
            return self.backend
        from flowkit.persistence.backends.impl_memory import MemoryBackend
        from flowkit.persistence.models import FlowDetail, LogBook

        backend = MemoryBackend()
        with self.lock:
            if self.flow_detail is None:
                self.flow_detail = FlowDetail(self.flow_name, self.flow_uuid)
                self.flow_detail.meta = self.flow_meta
            book = LogBook(f"{self.flow_name} run")
            shell = FlowDetail(self.flow_name, self.flow_uuid)
            book.add(shell)
            self._pending_book = book
            self.backend = backend
            self.durable = True
            self._flow_dirty = True
            self._dirty.update(self.records)
        return backend

    def snapshot(self) -> FlowDetail:
        """The flow detail as it stands (written through first, when there is one)."""
        from flowkit import _detail_sync
        from flowkit.persistence.models import FlowDetail

        if self.flow_detail is not None:
            self.flush()
            return self.flow_detail
        snapshot = FlowDetail(self.flow_name, self.flow_uuid)
        snapshot.state = self.flow_state
        snapshot.meta = dict(self.flow_meta)
        for record in self.records.values():
            history = self.history.get(record.name)
            snapshot.add(_detail_sync.fill_detail(_detail_sync.new_detail(record), record, history))
        return snapshot

    def names(self) -> Iterable[str]:
        return self.records.keys()
