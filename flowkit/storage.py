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

from flowkit import exceptions as exc
from flowkit import states as st
from flowkit.atom import Atom
from flowkit.retry import History, Retry
from flowkit.types.failure import Failure

__all__ = ["AtomRecord", "Storage"]

_NO_RESULT: Any = object()
_NO_PROVIDES: Mapping[str, int | str | None] = {}
# States in which an atom's execute result is (still) its current result.
_STANDING_STATES = frozenset({st.SUCCESS, st.REVERTING})


class AtomRecord:
    """Everything stored about one atom in one flow."""

    __slots__ = (
        "_meta",
        "failure",
        "has_result",
        "injected",
        "intention",
        "is_retry",
        "name",
        "progress",
        "result",
        "revert_failure",
        "revert_result",
        "save_as",
        "state",
        "uuid",
        "version",
    )

    def __init__(self, name: str, atom_uuid: str, version: str, is_retry: bool) -> None:
        self.name = name
        self.uuid = atom_uuid
        self.version = version
        self.is_retry = is_retry
        self.state = st.PENDING
        self.intention = st.EXECUTE
        self.result: Any = None
        #: ``result`` is a standing execute result its provided names can be read from.
        self.has_result = False
        #: The atom's provided name -> where it sits in ``result`` (shared, read-only).
        self.save_as: Mapping[str, int | str | None] = _NO_PROVIDES
        self.progress = 0.0
        self.failure: Failure | None = None
        self.revert_result: Any = None
        self.revert_failure: Failure | None = None
        #: atom-specific injected arguments (symbol -> value), if any.
        self.injected: dict[str, Any] | None = None
        # Most atoms never get metadata: the dict is made on first write.
        self._meta: dict[str, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form metadata (listeners record durations here), with the progress."""
        if self._meta is None:
            self._meta = {}
        self._meta["progress"] = self.progress
        return self._meta


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
        flow_name: the flow's name.
        flow_uuid: its identity (a new UUID when not given).
        backend: a persistence backend, or None to keep everything in memory.
    """

    def __init__(self, flow_name: str, flow_uuid: str | None = None, backend: Any = None) -> None:
        self._flow_name = flow_name
        self._flow_uuid = flow_uuid or str(uuid.uuid4())
        self._backend = backend
        self._flow_state = st.PENDING
        self._flow_meta: dict[str, Any] = {}
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

    # -- the persistence seam ---------------------------------------------------

    def _persist(self, record: AtomRecord | None = None) -> None:
        """Make a change durable (no-op in memory; durable backends override)."""

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
        """Make ``pairs`` visible to every atom of the flow (the ``store=``)."""
        self._store.update(pairs)
        if transient:
            self._transient.update(pairs)
        else:
            self._transient.difference_update(pairs)
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
