"""The engine-facing view of one flow's data: states, results, failures, inputs.

:class:`Storage` is what ``engine.storage`` returns, with TaskFlow's method names.
Each atom has one :class:`AtomRecord`; the engine's runtime reads and writes those
records directly on its hot path (an attribute store, no lookup by name), and
every change that must outlive the process goes through :meth:`Storage._persist`,
the seam a durable backend fills. In memory that seam does nothing, which is why
an in-memory run costs a few microseconds per task.

Symbol lookups here (:meth:`fetch`, :meth:`fetch_all`, :meth:`fetch_mapped_args`)
serve callers outside the engine; the engine itself resolves arguments through
the plans its compiler made.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flowkit import _detail_sync
from flowkit import exceptions as exc
from flowkit import states as st
from flowkit._atom_record import AtomRecord
from flowkit.atom import Atom
from flowkit.persistence.models import AtomDetail, FlowDetail
from flowkit.retry import History, Retry
from flowkit.types.failure import Failure

__all__ = ["AtomRecord", "Storage"]

_NO_RESULT: Any = object()
#: Where a flow detail keeps the values injected with ``store=`` (to resume with them).
_STORE_KEY = "store"
# States in which an atom's execute result is (still) its current result.
_STANDING_STATES = frozenset({st.SUCCESS, st.REVERTING})


_VERSION_TEXT: dict[Any, str] = {}


def _version_text(version: Any) -> str:
    """``(1, 0)`` -> ``"1.0"``, cached: most atoms share their class's version."""
    try:
        return _VERSION_TEXT[version]
    except (KeyError, TypeError):
        text = ".".join(str(p) for p in version) if isinstance(version, (list, tuple)) else str(version)
        with contextlib.suppress(TypeError):  # unhashable versions are just not cached
            _VERSION_TEXT[version] = text
        return text


class _ReadWriteLock:
    """The ``storage.lock`` TaskFlow exposes; one re-entrant lock serves both sides."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def read_lock(self) -> Iterator[None]:
        with self._lock:
            yield

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        with self._lock:
            yield


class Storage:
    """States, results and inputs of one flow, by atom name.

    Args:
        flow_detail: the :class:`~flowkit.persistence.models.FlowDetail` to keep
            the flow's data in (its atom details are loaded: this is how a flow
            resumes), or just the flow's name for a run kept in memory only.
        backend: the persistence backend the flow detail is saved to, or None.
        scope_fetcher: accepted for TaskFlow compatibility; the engine resolves
            scopes when it compiles, so it is not used.

    Changes are batched: the engine marks records dirty and writes them in one
    transaction right before it starts or reverts an atom (see :meth:`flush`),
    which gives the guarantees of doc/persistence.rst at one write per task.
    """

    def __init__(self, flow_detail: FlowDetail | str, backend: Any = None, scope_fetcher: Any = None) -> None:
        self._backend = backend
        self._flow_state = st.PENDING
        self._records: dict[str, AtomRecord] = {}
        #: flow-level injected values (``store=``), visible to every atom.
        self._store: dict[str, Any] = {}
        self._transient: set[str] = set()
        # symbol -> records providing it, in flow order; built on first lookup (the
        # engine never needs it, and a 100,000-atom flow would pay for it up front).
        self._provider_index: dict[str, list[AtomRecord]] | None = None
        self._history: dict[str, list[tuple[Any, dict[str, Failure]]]] = {}
        self.lock = _ReadWriteLock()
        # Random high bits per storage plus a counter in the low 48 bits.
        self._uuid_prefix = str(uuid.uuid4())[:24]
        self._uuid_counter = itertools.count(1)
        # What must be written at the next flush: records by name, and the flow row.
        self._dirty: dict[str, AtomRecord] = {}
        self._flow_dirty = False
        self._dirty_lock = threading.RLock()
        #: True while the engine runs: writes wait for its next flush.
        self._batching = False
        self._connection: Any = None
        self._details: dict[str, AtomDetail] = {}
        if isinstance(flow_detail, str):
            self._flow_detail: FlowDetail | None = None
            self._flow_name = flow_detail
            self._flow_uuid = str(uuid.uuid4())
            self._flow_meta: dict[str, Any] = {}
            #: Changes are tracked (and written) only for a flow detail somebody can see.
            self._tracked = backend is not None
        else:
            self._flow_detail = flow_detail
            self._flow_name = flow_detail.name
            self._flow_uuid = flow_detail.uuid
            self._flow_meta = flow_detail.meta
            self._tracked = True
            self._load(flow_detail)

    def _load(self, flow_detail: FlowDetail) -> None:
        """Take up the states and results an earlier run left in ``flow_detail``."""
        self._flow_state = flow_detail.state or st.PENDING
        for detail in flow_detail:
            record, history = _detail_sync.record_from_detail(detail)
            self._records[record.name] = record
            self._details[record.name] = detail
            if history:
                self._history[record.name] = history
        stored = self._flow_meta.get(_STORE_KEY)
        if isinstance(stored, dict):
            self._store.update(stored)

    # -- identity ---------------------------------------------------------------

    @property
    def flow_name(self) -> str:
        return self._flow_name

    @property
    def flow_uuid(self) -> str:
        return self._flow_uuid

    @property
    def flow_meta(self) -> dict[str, Any]:
        return self._flow_meta

    @property
    def backend(self) -> Any:
        return self._backend

    @property
    def flow_detail(self) -> FlowDetail:
        """The flow detail holding this flow's data (written through at each flush).

        For a flow kept in memory only, a snapshot made on each access.
        """
        if self._flow_detail is not None:
            self.flush()
            return self._flow_detail
        snapshot = FlowDetail(self._flow_name, self._flow_uuid)
        snapshot.state = self._flow_state
        snapshot.meta = dict(self._flow_meta)
        for record in self._records.values():
            history = self._history.get(record.name)
            snapshot.add(_detail_sync.fill_detail(_detail_sync.new_detail(record), record, history))
        return snapshot

    # -- the persistence seam ---------------------------------------------------

    def _persist(self, record: AtomRecord | None = None) -> None:
        """Note that ``record`` (None: the flow itself) changed; write it if not batching."""
        if not self._tracked:
            return
        if record is None:
            self._flow_dirty = True
        else:
            self._dirty[record.name] = record
        if not self._batching:
            self.flush()

    def flush(self) -> None:
        """Write every change made since the last flush, in one transaction.

        The engine calls this before it starts or reverts an atom, so a state is
        durable before the work it announces begins, and a result is durable
        before any atom that depends on it starts.

        Raises:
            StorageFailure: the backend could not write; the changes stay pending
                and are written by the next flush.
        """
        if not self._dirty and not self._flow_dirty:
            return
        # Under the lock: progress reported from worker threads changes records too.
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, {}
            flow_changed, self._flow_dirty = self._flow_dirty, False
            flow_detail = self._flow_detail
            if flow_detail is None:
                flow_detail = self._flow_detail = FlowDetail(self._flow_name, self._flow_uuid)
                flow_detail.meta = self._flow_meta
                flow_changed = True
            flow_detail.state = self._flow_state
            details = self._details
            written: list[AtomDetail] = []
            for name, record in dirty.items():
                detail = details.get(name)
                if detail is None:
                    detail = details[name] = _detail_sync.new_detail(record)
                    flow_detail.add(detail)
                written.append(_detail_sync.fill_detail(detail, record, self._history.get(name)))
        if self._backend is None:
            return
        try:
            if self._connection is None:
                self._connection = self._backend.get_connection()
            self._connection.save_flow_progress(flow_detail, written, flow_changed)
        except BaseException:
            with self._dirty_lock:
                self._dirty = {**dirty, **self._dirty}
                self._flow_dirty = self._flow_dirty or flow_changed
            raise

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Hold writes back until the block ends (or an explicit :meth:`flush`), then flush."""
        was, self._batching = self._batching, True
        try:
            yield
        finally:
            self._batching = was
        if not was:
            self.flush()
            self._release()

    def _release(self) -> None:
        """Give the backend connection back (between runs nothing is written)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    # -- atoms ------------------------------------------------------------------

    def ensure_atom(self, atom: Atom) -> str:
        """Create the record for ``atom`` if missing; return its uuid."""
        return self._ensure(atom, isinstance(atom, Retry)).uuid

    def _ensure(self, atom: Atom, is_retry: bool) -> AtomRecord:
        """``ensure_atom`` for callers that already know the atom's kind (the engine)."""
        record = self._records.get(atom.name)
        if record is None:
            record = AtomRecord(atom.name, self._new_uuid(), _version_text(atom.version), is_retry)
            self._records[atom.name] = record
            record.save_as = atom.save_as
            self._provider_index = None
            self._persist(record)
        elif record.save_as is not atom.save_as:
            # Loaded from a flow detail: what it provides comes from the atom.
            record.save_as = atom.save_as
            self._provider_index = None
        return record

    @property
    def _providers(self) -> dict[str, list[AtomRecord]]:
        index = self._provider_index
        if index is None:
            index = {}
            for record in self._records.values():
                for symbol in record.save_as:
                    index.setdefault(symbol, []).append(record)
            self._provider_index = index
        return index

    def _new_uuid(self) -> str:
        """A version-4 UUID string, made cheaply (flows have 100k+ atoms).

        The first 20 random hex digits are drawn once per storage; the last 12
        count atoms, so uuids are unique within a flow and random across flows.
        """
        return f"{self._uuid_prefix}{next(self._uuid_counter):012x}"

    def ensure_atoms(self, atoms: Iterable[Atom]) -> list[str]:
        """Create records for every atom in ``atoms``; return their uuids in order."""
        return [self.ensure_atom(atom) for atom in atoms]

    def _record(self, name: str) -> AtomRecord:
        try:
            return self._records[name]
        except KeyError:
            raise exc.NotFound(f"unknown atom name '{name}' in flow '{self._flow_name}'") from None

    def get_atom_uuid(self, atom_name: str) -> str:
        return self._record(atom_name).uuid

    def get_atom_state(self, atom_name: str) -> str:
        return self._record(atom_name).state

    def set_atom_state(self, atom_name: str, state: str) -> None:
        record = self._record(atom_name)
        record.state = state
        self._persist(record)

    def get_atom_intention(self, atom_name: str) -> str:
        return self._record(atom_name).intention

    def set_atom_intention(self, atom_name: str, intention: str) -> None:
        record = self._record(atom_name)
        record.intention = intention
        self._persist(record)

    def get_atoms_states(self, atom_names: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Return ``{name: (state, intention)}`` for the given atoms."""
        return {name: (self._record(name).state, self._record(name).intention) for name in atom_names}

    def update_atom_metadata(self, atom_name: str, update_with: Mapping[str, Any]) -> None:
        record = self._record(atom_name)
        record.meta.update(update_with)
        self._persist(record)

    def get_atom_metadata(self, atom_name: str) -> dict[str, Any]:
        return dict(self._record(atom_name).meta)

    def set_task_progress(
        self, task_name: str, progress: float, details: dict[str, Any] | None = None
    ) -> None:
        record = self._record(task_name)
        # Progress arrives from worker threads while the engine thread flushes.
        with self._dirty_lock:
            record.progress = progress
            if details is not None:
                record.meta["progress_details"] = {"at_progress": progress, "details": details}
            self._persist(record)

    def get_task_progress(self, task_name: str) -> float:
        return self._record(task_name).progress

    def get_task_progress_details(self, task_name: str) -> dict[str, Any] | None:
        meta = self._record(task_name)._meta
        return None if meta is None else meta.get("progress_details")

    # -- results ----------------------------------------------------------------

    def save(self, atom_name: str, result: Any, state: str = st.SUCCESS) -> None:
        """Store an outcome: a result (or Failure) for ``state``."""
        record = self._record(atom_name)
        record.state = state
        if state in (st.SUCCESS, st.FAILURE):
            if isinstance(result, Failure):
                record.failure, record.result, record.has_result = result, None, False
            else:
                record.failure, record.result = None, result
        elif state in (st.REVERTED, st.REVERT_FAILURE):
            if isinstance(result, Failure):
                record.revert_failure, record.revert_result = result, None
            else:
                record.revert_failure, record.revert_result = None, result
        self._persist(record)

    def get(self, atom_name: str) -> Any:
        """The execute result of ``atom_name``, or its Failure if it failed."""
        return self.get_execute_result(atom_name)

    def get_execute_result(self, atom_name: str) -> Any:
        record = self._record(atom_name)
        if record.failure is not None:
            return record.failure
        if record.state not in _STANDING_STATES:
            raise exc.NotFound(f"atom '{atom_name}' has no execute result (it is {record.state})")
        return record.result

    def get_revert_result(self, atom_name: str) -> Any:
        record = self._record(atom_name)
        if record.revert_failure is not None:
            return record.revert_failure
        if record.state != st.REVERTED:
            raise exc.NotFound(f"atom '{atom_name}' has no revert result (it is {record.state})")
        return record.revert_result

    def get_execute_failures(self) -> dict[str, Failure]:
        return {name: r.failure for name, r in self._records.items() if r.failure is not None}

    def get_revert_failures(self) -> dict[str, Failure]:
        return {name: r.revert_failure for name, r in self._records.items() if r.revert_failure is not None}

    get_failures = get_execute_failures

    def has_failures(self) -> bool:
        return any(r.failure is not None or r.revert_failure is not None for r in self._records.values())

    def reset(self, atom_name: str, state: str = st.PENDING) -> None:
        """Forget an atom's outcome and set it to ``state`` with intention EXECUTE."""
        record = self._record(atom_name)
        record.state, record.intention = state, st.EXECUTE
        record.result = record.failure = None
        record.has_result = False
        record.revert_result = record.revert_failure = None
        self._persist(record)

    # -- retries ----------------------------------------------------------------

    def save_retry_failure(self, retry_name: str, failed_atom_name: str, failure: Failure) -> None:
        history = self._history.setdefault(retry_name, [])
        if not history:
            history.append((None, {}))
        history[-1][1][failed_atom_name] = failure
        self._persist(self._record(retry_name))

    def _append_retry_result(self, retry_name: str, result: Any) -> None:
        self._history.setdefault(retry_name, []).append((result, {}))

    def cleanup_retry_history(self, retry_name: str, state: str) -> None:
        self._history.pop(retry_name, None)
        self.set_atom_state(retry_name, state)

    def get_retry_history(self, retry_name: str) -> History:
        record = self._record(retry_name)
        return History(list(self._history.get(retry_name, ())), failure=record.failure)

    def get_retry_histories(self) -> list[tuple[str, History]]:
        return [(name, self.get_retry_history(name)) for name, r in self._records.items() if r.is_retry]

    # -- injected values ----------------------------------------------------------

    def inject(self, pairs: Mapping[str, Any], transient: bool = False) -> None:
        """Make ``pairs`` visible to every atom of the flow (the ``store=``).

        Unless ``transient``, the values are saved with the flow detail, so a
        resumed run sees them too.

        Raises:
            InvalidFormat: a value to be saved cannot be stored as JSON (nothing
                is injected then).
        """
        if not transient and self._tracked:
            for name, value in pairs.items():
                try:
                    _detail_sync.check_storable(value)
                except (TypeError, ValueError) as err:
                    where = f"value injected as '{name}' into flow '{self._flow_name}'"
                    raise exc.InvalidFormat(f"{where} cannot be stored as JSON: {err}") from err
        self._store.update(pairs)
        if transient:
            self._transient.update(pairs)
        else:
            self._transient.difference_update(pairs)
            if self._tracked:
                self._flow_meta[_STORE_KEY] = {
                    k: v for k, v in self._store.items() if k not in self._transient
                }
            self._persist()

    def inject_atom_args(self, atom_name: str, pairs: Mapping[str, Any], transient: bool = True) -> None:
        """Give ``pairs`` to one atom only; they win over every other source."""
        record = self._record(atom_name)
        record.injected = {**(record.injected or {}), **pairs}
        if not transient:
            record.meta["injected"] = dict(record.injected)
            self._persist(record)

    # -- symbol lookups -----------------------------------------------------------

    def _values_of(self, name: str) -> list[Any]:
        """Every current value of ``name``: the injected one first, then results in atom order.

        Only atoms whose result still stands count (SUCCESS, or REVERTING while it is
        being undone); a reverted atom's result is gone, as in TaskFlow.
        """
        values = [self._store[name]] if name in self._store else []
        for record in self._providers.get(name, ()):
            if record.has_result and record.state in _STANDING_STATES:
                key = record.save_as[name]
                values.append(record.result if key is None else record.result[key])
        return values

    def fetch(self, name: str, many_handler: Callable[[list[Any]], Any] | None = None) -> Any:
        """Return the value of symbol ``name``.

        Args:
            name: the symbol.
            many_handler: picks from several values (default: the first, which is the
                injected one when there is one, else the first provider's).

        Raises:
            NotFound: nothing injected or produced the symbol (yet).
        """
        values = self._values_of(name)
        if not values:
            raise exc.NotFound(f"no value for symbol '{name}' in flow '{self._flow_name}'")
        return many_handler(values) if many_handler else values[0]

    def fetch_all(self, many_handler: Callable[[list[Any]], Any] | None = None) -> dict[str, Any]:
        """Return every symbol that has a value right now.

        A symbol with several values (injected and produced, or several producers)
        maps to the list of them unless ``many_handler`` picks one, as in TaskFlow.
        """
        results: dict[str, Any] = {}
        for name in [*self._store, *(n for n in self._providers if n not in self._store)]:
            values = self._values_of(name)
            if values:
                if many_handler is not None:
                    results[name] = many_handler(values)
                else:
                    results[name] = values if len(values) > 1 else values[0]
        return results

    def fetch_mapped_args(
        self,
        args_mapping: Mapping[str, str],
        atom_name: str | None = None,
        scope_walker: Any = None,
        optional_args: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Resolve ``{argument: symbol}`` to ``{argument: value}``.

        Atom-specific injected values come first, then the flow's injected values,
        then results. Missing optional arguments are left out.

        Raises:
            NotFound: a required argument has no value, naming it and the atom.
        """
        optional = frozenset(optional_args or ())
        injected = self._record(atom_name).injected or {} if atom_name else {}
        out: dict[str, Any] = {}
        for arg, symbol in args_mapping.items():
            if symbol in injected:
                out[arg] = injected[symbol]
                continue
            try:
                out[arg] = self.fetch(symbol)
            except exc.NotFound:
                if arg in optional:
                    continue
                who = f" for atom '{atom_name}'" if atom_name else ""
                raise exc.NotFound(f"argument '{arg}' (symbol '{symbol}'){who} has no value") from None
        return out

    def fetch_unsatisfied_args(
        self,
        atom_name: str,
        args_mapping: Mapping[str, str],
        scope_walker: Any = None,
        optional_args: Iterable[str] | None = None,
    ) -> set[str]:
        """Return the symbols of required arguments nothing can provide."""
        optional = frozenset(optional_args or ())
        injected = self._record(atom_name).injected or {}
        return {
            symbol
            for arg, symbol in args_mapping.items()
            if arg not in optional
            and symbol not in injected
            and symbol not in self._store
            and symbol not in self._providers
        }

    # -- the flow -----------------------------------------------------------------

    def get_flow_state(self) -> str:
        return self._flow_state

    def set_flow_state(self, state: str) -> None:
        self._flow_state = state
        self._persist()

    def change_flow_state(self, state: str) -> tuple[bool, str]:
        """Move the flow to ``state`` if the state table allows; return (moved, old)."""
        old = self._flow_state
        moved = st.check_flow_transition(old, state)
        if moved:
            self.set_flow_state(state)
        return moved, old

    def update_flow_metadata(self, update_with: Mapping[str, Any]) -> None:
        self._flow_meta.update(update_with)
        self._persist()
